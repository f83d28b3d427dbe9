package lambdaenv_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

// Lines logged during an invocation carry its AWS request id; lines of the
// init phase, which has none, do not.
func TestLoggerTagsInvocations(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := lambdaenv.NewLogger(&buf).With("route", "subscribe")
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd"})

	log.InfoContext(ctx, "subscribed", "topics", 2)
	log.Info("init")

	lines := jsonLines(t, buf.Bytes())
	if len(lines) != 2 {
		t.Fatalf("log = %s, want two lines", buf.Bytes())
	}
	if got := lines[0]["aws_request_id"]; got != "8476a536-e9f4-11e8-9739-2dfe598c3fcd" || lines[0]["route"] != "subscribe" {
		t.Errorf("invocation line = %v, want its aws_request_id and the logger's route", lines[0])
	}
	if _, ok := lines[1]["aws_request_id"]; ok {
		t.Errorf("init line = %v, want no aws_request_id", lines[1])
	}
}

// The start-up exits, so each case runs in a child process: this test
// binary again, told by env which Load to run.
func TestLoad(t *testing.T) {
	if os.Getenv("LAMBDAENV_CHILD") == "1" {
		os.Args = append([]string{"publish"}, strings.Fields(os.Getenv("LAMBDAENV_ARGS"))...)
		lambdaenv.Load("publish", config.Config.RequireAPIGW)
		os.Exit(0)
	}
	t.Parallel()
	tests := []struct {
		name     string
		args     string
		env      []string
		wantCode int
		check    func(t *testing.T, stderr []byte)
	}{
		{
			name: "-h lists the Lambdas' settings and their defaults, and only those",
			args: "-h",
			// Settings that would fail do not matter: -h comes first.
			env: []string{"TABLE_NAME=x"},
			check: func(t *testing.T, stderr []byte) {
				if !bytes.HasPrefix(stderr, []byte("publish is configured by environment variables")) {
					t.Errorf("-h output does not name the function:\n%s", stderr)
				}
				for _, s := range config.Settings {
					listed := bytes.Contains(stderr, []byte(s.Name+" "))
					if want := slices.Contains(lambdaReads, s.Name); listed != want || want && !bytes.Contains(stderr, []byte(s.Default)) {
						t.Errorf("-h output lists %s (default %q): %v, want %v:\n%s", s.Name, s.Default, listed, want, stderr)
					}
				}
			},
		},
		{
			name:     "an unknown flag is a usage error",
			args:     "-nope",
			wantCode: 2,
		},
		{
			name:     "one JSON line per problem",
			env:      []string{"TABLE_NAME=x", "GRPC_ADDR=nope"}, // and APIGW_ENDPOINT unset
			wantCode: 1,
			check: func(t *testing.T, stderr []byte) {
				lines := jsonLines(t, stderr)
				want := []string{"GRPC_ADDR", "TABLE_NAME", "APIGW_ENDPOINT is required"}
				if len(lines) != len(want) {
					t.Fatalf("log = %s, want %d lines", stderr, len(want))
				}
				for i, w := range want {
					if lines[i]["level"] != "ERROR" || !strings.Contains(lines[i]["err"].(string), w) {
						t.Errorf("line %d = %v, want an error about %s", i, lines[i], w)
					}
				}
			},
		},
		{
			name: "valid settings start",
			env:  []string{"APIGW_ENDPOINT=https://abc.execute-api.eu-west-1.amazonaws.com/prod", "AWS_REGION=eu-west-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestLoad$")
			cmd.Env = append([]string{"LAMBDAENV_CHILD=1", "LAMBDAENV_ARGS=" + tt.args, "HOME=" + t.TempDir()}, tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.Bytes())
			}
			if tt.check != nil {
				tt.check(t, stderr.Bytes())
			}
		})
	}
}

// lambdaReads are the variables a Lambda reads, written out independently
// of lambdaenv's list: the listeners, API keys and the devstack's emulator
// settings change nothing in a Lambda.
var lambdaReads = []string{
	"TABLE_NAME", "DYNAMODB_ENDPOINT", "APIGW_ENDPOINT", "AWS_REGION",
	"CONNECT_TOKEN_SECRET", "MAX_SUBSCRIPTIONS_PER_CONNECTION", "CALL_TIMEOUT",
	"HISTORY_TTL", "RECOVERY_MAX_MESSAGES",
}

func jsonLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}
