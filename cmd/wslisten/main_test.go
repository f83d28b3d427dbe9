package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/devstack"
)

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("WSLISTEN_MAIN_ARGS"); ok {
		os.Args = append([]string{"wslisten"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const secret = "0123456789abcdef0123456789abcdef"

// authStack is a devstack with connect auth on.
func authStack(t *testing.T) string {
	t.Helper()
	env := map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"CONNECT_TOKEN_SECRET": secret,
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := devstack.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "ws://" + s.WSAddr + "/"
}

// Without a token the stack answers 401; wslisten must say what that means
// with wsgateway and how to get past it.
func TestUnauthorizedExplainsTheToken(t *testing.T) {
	t.Parallel()
	url := authStack(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := run(ctx, url, []string{"demo"})
	if err == nil {
		t.Fatal("connected without a token")
	}
	for _, fact := range []string{"?token=", "-token", "make -s token", "CONNECT_TOKEN_SECRET"} {
		if !strings.Contains(err.Error(), fact) {
			t.Errorf("error does not mention %s:\n%v", fact, err)
		}
	}

	// The way the hint shows works: -token puts a minted token in ?token=.
	tok, err := auth.NewTokens(secret, time.Now).Mint("dev", []string{"demo"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	withTok, err := withToken(url, tok)
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := websocket.Dial(ctx, withTok, nil)
	if err != nil {
		t.Fatalf("with -token: %v", err)
	}
	conn.Close(websocket.StatusNormalClosure, "")

	// A token in an error message would leak it into logs.
	bad, _ := withToken(url, "not-a-token-secret-ish")
	if err := run(ctx, bad, []string{"demo"}); err == nil || strings.Contains(err.Error(), "not-a-token-secret-ish") {
		t.Errorf("with a bad token: %v, want an error that does not repeat the token", err)
	}
}

func TestWithToken(t *testing.T) {
	t.Parallel()
	if got, _ := withToken("ws://h:1/", ""); got != "ws://h:1/" {
		t.Errorf("no token: %q", got)
	}
	if got, _ := withToken("ws://h:1/", "a.b+c"); got != "ws://h:1/?token=a.b%2Bc" {
		t.Errorf("token: %q", got)
	}
	if _, err := withToken("ws://h:1/?token=x", "y"); err == nil {
		t.Error("accepted a token twice")
	}
}

// wslisten is configured by flags only: -h lists no environment variable.
func TestHelpListsNoSetting(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"WSLISTEN_MAIN_ARGS=-h", "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	for _, s := range config.Settings {
		if strings.Contains(stderr.String(), s.Name+" ") {
			t.Errorf("-h lists %s, which wslisten does not read:\n%s", s.Name, stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "environment") {
		t.Errorf("-h says nothing about the environment:\n%s", stderr.String())
	}
}
