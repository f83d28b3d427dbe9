package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wsgateway/wsgateway/internal/config"
)

// main exits, so each case runs it in a child process: this test binary
// again, with the arguments and environment of the case.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("TOKEN_MAIN_ARGS"); ok {
		os.Args = append([]string{"token"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, args string, env ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append([]string{"TOKEN_MAIN_ARGS=" + args, "HOME=" + t.TempDir()}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatal(err)
		}
		code = exit.ExitCode()
	}
	return code, out.String(), errOut.String()
}

// topicsClaim decodes a JWT's payload, unverified, for its topics.
func topicsClaim(t *testing.T, jwt string) []string {
	t.Helper()
	topics, _ := claims(t, jwt)
	return topics
}

// claims decodes a JWT's payload, unverified, for its topics and publish
// claims.
func claims(t *testing.T, jwt string) (topics, publish []string) {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(jwt), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Topics, Publish []string }
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Topics, c.Publish
}

const goodSecret = "0123456789abcdef0123456789abcdef"

// A token signed with a secret the servers refuse to start with is refused
// by every stack: minting one must fail too.
func TestRefusesSecretsTheServersRefuse(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{"", "short", "                    "} {
		code, stdout, stderr := runMain(t, "demo", "CONNECT_TOKEN_SECRET="+secret)
		if code == 0 || stdout != "" {
			t.Errorf("CONNECT_TOKEN_SECRET=%q: exit %d, printed %q; want a failure and no token", secret, code, stdout)
		}
		if !strings.Contains(stderr, "CONNECT_TOKEN_SECRET") {
			t.Errorf("CONNECT_TOKEN_SECRET=%q: stderr %q does not name the variable", secret, stderr)
		}
		if err := config.CheckConnectTokenSecret(secret); err == nil {
			t.Errorf("the servers accept %q, which token refuses", secret)
		}
	}
	code, stdout, stderr := runMain(t, "orders.* news", "CONNECT_TOKEN_SECRET="+goodSecret)
	if code != 0 {
		t.Fatalf("exit %d with a good secret: %s", code, stderr)
	}
	if got := topicsClaim(t, stdout); !slices.Equal(got, []string{"orders.*", "news"}) {
		t.Errorf("topics %q, want [orders.* news]", got)
	}
}

// -h names the one variable token reads, and none it ignores.
func TestHelpListsWhatItReads(t *testing.T) {
	t.Parallel()
	_, _, stderr := runMain(t, "-h")
	for _, s := range config.Settings {
		if got, want := strings.Contains(stderr, s.Name+" "), s.Name == "CONNECT_TOKEN_SECRET"; got != want {
			t.Errorf("-h lists %s: %v, want %v:\n%s", s.Name, got, want, stderr)
		}
	}
}

// make token passes TOPICS to the shell: patterns such as '*' must reach
// the token as written, not as the names of the files they match.
func TestMakeToken(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is not installed: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		topics, publish   string
		want, wantPublish []string
	}{
		{"*", "", []string{"*"}, nil},
		{"orders.* news", "", []string{"orders.*", "news"}, nil},
		{"", "", []string{"*"}, nil}, // the default
		{"chat.*", "chat.*", []string{"chat.*"}, []string{"chat.*"}},
		{"*", "chat.* news", []string{"*"}, []string{"chat.*", "news"}},
	} {
		cmd := exec.Command("make", "-s", "token", "TOPICS="+tt.topics, "PUBLISH="+tt.publish)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CONNECT_TOKEN_SECRET="+goodSecret)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("make token TOPICS=%q: %v\n%s", tt.topics, err, stderr.Bytes())
		}
		topics, publish := claims(t, string(out))
		if !slices.Equal(topics, tt.want) || !slices.Equal(publish, tt.wantPublish) {
			t.Errorf("make token TOPICS=%q PUBLISH=%q: topics %q, publish %q; want %q, %q", tt.topics, tt.publish, topics, publish, tt.want, tt.wantPublish)
		}
	}
}

// -publish names what the connection may publish to, as the topics are
// named; a pattern that is no topic or prefix is refused, and no token
// printed.
func TestPublishFlag(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runMain(t, "-publish chat.*,news orders.*", "CONNECT_TOKEN_SECRET="+goodSecret)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if topics, publish := claims(t, stdout); !slices.Equal(topics, []string{"orders.*"}) || !slices.Equal(publish, []string{"chat.*", "news"}) {
		t.Errorf("topics %q, publish %q; want [orders.*] and [chat.* news]", topics, publish)
	}
	code, stdout, stderr = runMain(t, "-publish a*b orders.*", "CONNECT_TOKEN_SECRET="+goodSecret)
	if code == 0 || stdout != "" || !strings.Contains(stderr, "publish claim") {
		t.Errorf("-publish a*b: exit %d, printed %q, stderr %q; want a failure naming the publish claim", code, stdout, stderr)
	}
}
