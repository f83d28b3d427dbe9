package devstack_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/devstack"
)

// The banner's commands are pasted as they are: each must work against the
// stack that printed it, auth on or off, with only what the banner says to
// set in the new terminal.
func TestBannerCommandsWork(t *testing.T) {
	t.Parallel()
	const secret, key = "banner-secret-0123456789abcdef", "banner-key-1"
	for _, tt := range []struct {
		name string
		env  map[string]string
		// what the banner tells the reader to export
		export []string
	}{
		{name: "auth off"},
		{
			name:   "auth on",
			env:    map[string]string{"API_KEYS": key + ",other", "CONNECT_TOKEN_SECRET": secret},
			export: []string{"API_KEY=" + key, "CONNECT_TOKEN_SECRET=" + secret},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"}
			for k, v := range tt.env {
				env[k] = v
			}
			e := start(t, env)
			cfg, err := config.Load(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			cfg.WSAddr, cfg.HTTPAddr = e.stack.WSAddr, e.stack.HTTPAddr
			banner := devstack.Banner(e.stack, cfg)
			if strings.Contains(banner, secret) || strings.Contains(banner, key) {
				t.Errorf("the banner prints a secret:\n%s", banner)
			}
			for _, want := range tt.export {
				if name, _, _ := strings.Cut(want, "="); !strings.Contains(banner, "export "+name+"=") {
					t.Errorf("the banner does not say to export %s:\n%s", name, banner)
				}
			}
			root, _ := filepath.Abs("../..")
			shell := func(command string) string {
				t.Helper()
				cmd := exec.Command("bash", "-c", command)
				cmd.Dir = root
				cmd.Env = append(os.Environ(), tt.export...)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s", command, err, out)
				}
				return string(out)
			}

			// Publish exactly as the banner says.
			curl := regexp.MustCompile(`(?m)^\s*(curl .*)$`).FindStringSubmatch(banner)
			if curl == nil {
				t.Fatalf("no curl command in the banner:\n%s", banner)
			}
			if out := shell(curl[1] + " --fail-with-body"); !strings.Contains(out, "messageId") {
				t.Errorf("the banner's curl answered %s", out)
			}

			// Subscribe: the URL and, with auth on, the token the banner's
			// wslisten command mints.
			ws := regexp.MustCompile(`(?m)^\s*go run ./cmd/wslisten -url (\S+)(?: -token "\$\((.*)\)")? demo$`).FindStringSubmatch(banner)
			if ws == nil {
				t.Fatalf("no wslisten command in the banner:\n%s", banner)
			}
			url := ws[1]
			if tt.env["CONNECT_TOKEN_SECRET"] != "" {
				if ws[2] == "" {
					t.Fatalf("with connect auth on, the wslisten command passes no token:\n%s", banner)
				}
				url += "?token=" + strings.TrimSpace(shell(ws[2]))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			conn, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				t.Fatalf("connecting as the banner says: %v", err)
			}
			conn.Close(websocket.StatusNormalClosure, "")
		})
	}
}
