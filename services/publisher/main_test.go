package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/wsgateway/wsgateway/internal/config"
)

// main exits, so each case runs it in a child process: this test binary
// again, with the arguments and environment of the case.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("PUBLISHER_MAIN_ARGS"); ok {
		os.Args = append([]string{"publisher"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStartUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     string
		env      []string
		wantCode int
		want     []string // in stderr
	}{
		{
			name: "-h lists the settings",
			args: "-h",
			want: withSpace(reads),
		},
		{
			name:     "every bad setting on a line of its own",
			env:      []string{"TABLE_NAME=x", "HTTP_ADDR=nowhere"},
			wantCode: 1,
			want: []string{
				`"msg":"invalid configuration","err":"HTTP_ADDR=\"nowhere\"`,
				`"msg":"invalid configuration","err":"TABLE_NAME=\"x\"`,
				`"msg":"invalid configuration","err":"APIGW_ENDPOINT is required`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append([]string{"PUBLISHER_MAIN_ARGS=" + tt.args, "HOME=" + t.TempDir()}, tt.env...)
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
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			for _, w := range tt.want {
				if n := countContaining(lines, w); n != 1 {
					t.Errorf("%d lines contain %s, want 1; stderr:\n%s", n, w, stderr.Bytes())
				}
			}
		})
	}
}

// reads are the variables the publisher reads, written out independently of
// main's list.
var reads = []string{
	"GRPC_ADDR", "HTTP_ADDR", "TABLE_NAME", "DYNAMODB_ENDPOINT", "APIGW_ENDPOINT",
	"AWS_REGION", "API_KEYS", "CALL_TIMEOUT", "HISTORY_TTL",
}

func withSpace(names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, n+" ")
	}
	return out
}

// -h lists no variable the publisher ignores (the devstack's WS_ADDR, the
// connect Lambda's settings): an operator would set it to no effect.
func TestHelpListsOnlyWhatItReads(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"PUBLISHER_MAIN_ARGS=-h", "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	for _, s := range config.Settings {
		if got, want := strings.Contains(stderr.String(), s.Name+" "), slices.Contains(reads, s.Name); got != want {
			t.Errorf("-h lists %s: %v, want %v:\n%s", s.Name, got, want, stderr.String())
		}
	}
}

func countContaining(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
