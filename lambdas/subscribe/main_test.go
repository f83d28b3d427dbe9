package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The subscribe function posts to connections (a recovering subscribe's
// replay), so it must refuse to start without APIGW_ENDPOINT rather than
// answer every recovery false on AWS. main exits, so it runs in a child
// process: this test binary again.
func TestMainRequiresAPIGWEndpoint(t *testing.T) {
	if os.Getenv("SUBSCRIBE_MAIN_CHILD") == "1" {
		os.Args = os.Args[:1]
		main()
		return
	}
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     []string
		refused bool // the init phase names APIGW_ENDPOINT
	}{
		{"without APIGW_ENDPOINT", nil, true},
		{"with it", []string{"APIGW_ENDPOINT=https://abc.execute-api.eu-west-1.amazonaws.com/prod"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainRequiresAPIGWEndpoint$")
			cmd.Env = append([]string{"SUBSCRIBE_MAIN_CHILD=1", "HOME=" + t.TempDir(), "AWS_REGION=eu-west-1"}, tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			// Either way the child ends: refused in its init phase, or,
			// settings accepted, by lambda.Start finding no Lambda runtime
			// to serve.
			if exit := (*exec.ExitError)(nil); !errors.As(err, &exit) {
				t.Fatalf("child ended with %v, want an exit status; stderr:\n%s", err, stderr.Bytes())
			}
			refused := strings.Contains(stderr.String(), "APIGW_ENDPOINT is required")
			if refused != tc.refused {
				t.Errorf("refused for APIGW_ENDPOINT: %v, want %v; stderr:\n%s", refused, tc.refused, stderr.Bytes())
			}
			if !tc.refused && strings.Contains(stderr.String(), "cannot start") {
				t.Errorf("settings refused:\n%s", stderr.Bytes())
			}
		})
	}
}
