package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/wsgateway/wsgateway/internal/config"
)

// main exits, so each case runs it in a child process: this test binary
// again, with the arguments and environment of the case.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("DEVSTACK_MAIN_ARGS"); ok {
		os.Args = append([]string{"devstack"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStartUp(t *testing.T) {
	t.Parallel()
	var settings []string
	for _, s := range config.Settings {
		settings = append(settings, s.Name+" ")
	}
	tests := []struct {
		name     string
		args     string
		env      []string
		wantCode int
		want     []string // each on exactly one line of stderr
	}{
		// The devstack runs every part, so every setting applies to it.
		{name: "-h lists the settings", args: "-h", want: settings},
		{
			name:     "every bad setting on a line of its own",
			env:      []string{"TABLE_NAME=x", "WS_ADDR=nowhere", "DYNAMODB_ENDPOINT=localhost:8000"},
			wantCode: 1,
			want:     []string{`WS_ADDR="nowhere"`, `DYNAMODB_ENDPOINT="localhost:8000"`, `TABLE_NAME="x"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append([]string{"DEVSTACK_MAIN_ARGS=" + tt.args, "HOME=" + t.TempDir()}, tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			code := 0
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatal(err)
				}
				code = exit.ExitCode()
			}
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.Bytes())
			}
			for _, w := range tt.want {
				n := 0
				for _, l := range strings.Split(stderr.String(), "\n") {
					if strings.Contains(l, w) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d lines contain %s, want 1; stderr:\n%s", n, w, stderr.Bytes())
				}
			}
		})
	}
}
