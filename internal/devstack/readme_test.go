package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// repoRoot is where README.md, gen/ts and node_modules live.
const repoRoot = "../.."

// TestReadmePublishExamples runs the README's publish examples as written,
// each against its own devstack, and checks that a subscribed browser gets
// the message: if an example rots, this fails.
func TestReadmePublishExamples(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readmeBlocks(readme)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	for _, tc := range []struct {
		name  string
		run   func(t *testing.T, code string) string
		data  string
		attrs map[string]string
	}{
		{"go", runGo, `{"hello":"go"}`, nil},
		{"typescript", runTypeScript, `{"hello":"ts"}`, nil},
		{"curl", runCurl, `{"hello":"curl"}`, map[string]string{"source": "readme"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, ok := blocks[tc.name]
			if !ok {
				t.Fatalf("README.md has no code block marked <!-- readme-test: %s -->", tc.name)
			}
			e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
			browser := e.dial(t, "demo")

			// The README shows the default addresses; this stack has its own.
			local := strings.NewReplacer("127.0.0.1:9090", e.stack.GRPCAddr, "127.0.0.1:8081", e.stack.HTTPAddr).Replace(code)
			if local == code {
				t.Fatalf("the %s example names neither 127.0.0.1:9090 nor 127.0.0.1:8081:\n%s", tc.name, code)
			}
			var out string
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("the %s example as run:\n%s\nprinted:\n%s", tc.name, local, out)
				}
			})
			out = tc.run(t, local)
			browser.expectMessage(t, "demo", printedID(t, out), tc.data, tc.attrs)
		})
	}
}

// readmeFence is a marker comment and the fenced code block right after it.
var readmeFence = regexp.MustCompile("(?s)<!-- readme-test: ([a-z]+) -->\n```[a-z]*\n(.*?\n)```\n")

// readmeBlocks maps each marker's name to its code block.
func readmeBlocks(readme []byte) (map[string]string, error) {
	matches := readmeFence.FindAllSubmatch(readme, -1)
	if n := bytes.Count(readme, []byte("<!-- readme-test:")); n != len(matches) {
		return nil, fmt.Errorf("%d readme-test markers but %d are directly followed by a fenced code block", n, len(matches))
	}
	blocks := make(map[string]string)
	for _, m := range matches {
		name := string(m[1])
		if _, dup := blocks[name]; dup {
			return nil, fmt.Errorf("two code blocks marked readme-test: %s", name)
		}
		blocks[name] = string(m[2])
	}
	return blocks, nil
}

// printedID is the message id an example printed: the REST answer's
// messageId, or the first word of the Go and TypeScript examples' output.
func printedID(t *testing.T, out string) string {
	t.Helper()
	var rest struct {
		MessageID string `json:"messageId"`
	}
	if json.Unmarshal([]byte(out), &rest) == nil {
		if rest.MessageID == "" {
			t.Fatal("the REST answer has no messageId")
		}
		return rest.MessageID
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatal("the example printed nothing; it should print the message id")
	}
	return f[0]
}

// goMain turns the README's Go block, the body of a function, into a
// program. Its imports are the ones the block needs: an unused one fails
// the build, so the README and this list cannot drift apart.
const goMain = `package main

import (
	"context"
	"fmt"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
)

func main() {
	ctx := context.Background()
%s}
`

func runGo(t *testing.T, code string) string {
	dir := t.TempDir()
	main := filepath.Join(dir, "main.go")
	if err := os.WriteFile(main, fmt.Appendf(nil, goMain, code), 0o644); err != nil {
		t.Fatal(err)
	}
	// Run from the repository so the program builds in this module, with
	// its go.mod and the generated client.
	return run(t, repoRoot, "go", "run", main)
}

func runTypeScript(t *testing.T, code string) string {
	modules, err := filepath.Abs(filepath.Join(repoRoot, "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, ".bin", "tsc")); err != nil {
		t.Fatalf("the TypeScript example needs node_modules: run `make node_modules/.package-lock.json` (%v)", err)
	}
	// A scratch project laid out like the repository, so the example's
	// "./gen/ts/…" import works as written. gen/ts is copied, not linked:
	// tsc writes its .js next to each source.
	dir := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "gen", "ts"), os.DirFS(filepath.Join(repoRoot, "gen", "ts"))); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"package.json": `{"type": "module"}`,
		"publish.ts":   code,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, dir, filepath.Join("node_modules", ".bin", "tsc"), "--strict", "--noEmitOnError", "--skipLibCheck",
		"--module", "nodenext", "--target", "es2022", "--lib", "es2022,dom", "publish.ts")
	return run(t, dir, "node", "publish.js")
}

func runCurl(t *testing.T, code string) string {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("the REST example needs curl: %v", err)
	}
	return run(t, t.TempDir(), "bash", "-eu", "-o", "pipefail", "-c", code)
}

// run runs a command in dir and returns its standard output; any failure
// fails the test with everything the command printed.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}
