package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The function posts the message to the topic's subscribers, so it refuses
// to start without APIGW_ENDPOINT; it reads the client publish rate, so it
// refuses a bad one at init, and its -h lists both settings. main exits,
// so each case runs in a child process: this test binary again.
func TestMain_Start(t *testing.T) {
	if os.Getenv("CLIENTPUBLISH_MAIN_CHILD") == "1" {
		os.Args = append(os.Args[:1], strings.Fields(os.Getenv("CLIENTPUBLISH_ARGS"))...)
		main()
		return
	}
	t.Parallel()
	const endpoint = "APIGW_ENDPOINT=https://abc.execute-api.eu-west-1.amazonaws.com/prod"
	for _, tc := range []struct {
		name, args string
		env        []string
		want       []string // in stderr
		wantNot    string
	}{
		{"without APIGW_ENDPOINT", "", nil, []string{"APIGW_ENDPOINT is required"}, ""},
		{"a bad rate", "", []string{endpoint, "CLIENT_PUBLISH_RATE=0", "CLIENT_PUBLISH_BURST=x"}, []string{"CLIENT_PUBLISH_RATE", "CLIENT_PUBLISH_BURST"}, ""},
		{"good settings", "", []string{endpoint, "CLIENT_PUBLISH_RATE=5"}, nil, "cannot start"},
		{"-h lists the rate", "-h", nil, []string{"clientpublish is configured", "CLIENT_PUBLISH_RATE ", "CLIENT_PUBLISH_BURST ", "CALL_TIMEOUT "}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMain_Start$")
			cmd.Env = append([]string{"CLIENTPUBLISH_MAIN_CHILD=1", "CLIENTPUBLISH_ARGS=" + tc.args, "HOME=" + t.TempDir(), "AWS_REGION=eu-west-1"}, tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			// Either way the child ends: refused in its init phase, or,
			// settings accepted, by lambda.Start finding no Lambda runtime.
			if exit := (*exec.ExitError)(nil); tc.args == "" && !errors.As(err, &exit) {
				t.Fatalf("child ended with %v, want an exit status; stderr:\n%s", err, stderr.Bytes())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr.Bytes())
				}
			}
			if tc.wantNot != "" && strings.Contains(stderr.String(), tc.wantNot) {
				t.Errorf("stderr says %q:\n%s", tc.wantNot, stderr.Bytes())
			}
		})
	}
}
