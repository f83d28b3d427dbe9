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

// repoRoot is where README.md and gen/ live.
const repoRoot = "../.."

// clonePath is how the README's setup steps name the reader's clone of this
// repository; the test substitutes this checkout.
const clonePath = "/path/to/wsgateway"

// exampleDocs hold the publish examples: the README shows the calls,
// docs/publishing.md the project setup each one needs.
var exampleDocs = []string{"README.md", "docs/publishing.md"}

// TestReadmePublishExamples runs the README's publish examples as written,
// with their setup from docs/publishing.md, each against its own devstack
// and from a directory outside the repository, as a reader's own project
// would, and checks that a subscribed browser gets the message: if an
// example or its setup rots, this fails.
func TestReadmePublishExamples(t *testing.T) {
	t.Parallel()
	blocks := map[string]string{}
	for _, doc := range exampleDocs {
		text, err := os.ReadFile(filepath.Join(repoRoot, doc))
		if err != nil {
			t.Fatal(err)
		}
		found, err := readmeBlocks(text)
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		for name, b := range found {
			if _, dup := blocks[name]; dup {
				t.Fatalf("%s: a second code block marked readme-test: %s", doc, name)
			}
			blocks[name] = b
		}
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		run   func(t *testing.T, blocks map[string]string) string
		data  string
		attrs map[string]string
	}{
		{"go", runGo, `{"hello":"go"}`, nil},
		{"typescript", runTypeScript, `{"hello":"ts"}`, nil},
		{"curl", runCurl, `{"hello":"curl"}`, map[string]string{"source": "readme"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code := readmeBlock(t, blocks, tc.name)
			e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
			browser := e.dial(t, "demo")

			// The README shows the default addresses; this stack has its own.
			subst := strings.NewReplacer("127.0.0.1:9090", e.stack.GRPCAddr, "127.0.0.1:8081", e.stack.HTTPAddr, clonePath, root)
			local := make(map[string]string, len(blocks))
			for name, b := range blocks {
				local[name] = subst.Replace(b)
			}
			if local[tc.name] == code {
				t.Fatalf("the %s example names neither 127.0.0.1:9090 nor 127.0.0.1:8081:\n%s", tc.name, code)
			}
			var out string
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("the %s example as run:\n%s\nprinted:\n%s", tc.name, local[tc.name], out)
				}
			})
			out = tc.run(t, local)
			browser.expectMessage(t, "demo", printedID(t, out), tc.data, tc.attrs)
		})
	}
}

// TestReadmeUserExamples runs docs/publishing.md's curl block for users,
// broadcasts and disconnects as written, against a devstack with connect
// tokens on and a browser connected as alice to demo and news, and checks
// each answer and every frame the browser gets, down to the close.
func TestReadmeUserExamples(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("the example needs curl: %v", err)
	}
	testUserExamples(t, docBlocks(t, "docs/publishing.md"), "curl-users", `{"hello":"alice"}`, nil)
}

// testUserExamples runs the users block name (four calls: send to alice,
// count demo's subscribers, broadcast to demo and news, disconnect alice)
// with env, against a devstack with connect tokens on and a browser
// connected as alice to demo and news, and checks each answer and every
// frame the browser gets, down to the close; sendData is what the block
// sends to alice.
func testUserExamples(t *testing.T, blocks map[string]string, name, sendData string, env []string) {
	t.Helper()
	code := readmeBlock(t, blocks, name)
	e := start(t, map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"CONNECT_TOKEN_SECRET": testSecret,
	})
	alice := e.dialAs(t, "alice", "news", "demo")
	local := e.localAddrs(t, name, code)
	out := shellEnv(t, t.TempDir(), env, local)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the %s example as run:\n%s\nprinted:\n%s", name, local, out)
		}
	})

	// The four answers, one JSON object each, in order.
	var (
		sent struct {
			MessageID string `json:"messageId"`
			Delivered int    `json:"delivered"`
		}
		count     struct{ Connections, Users int }
		broadcast struct {
			Results []struct{ Topic, MessageID string } `json:"results"`
		}
		disconnected struct{ Disconnected int }
	)
	decodeAnswers(t, out, &sent, &count, &broadcast, &disconnected)
	if sent.Delivered != 1 || count.Connections != 1 || count.Users != 1 || len(broadcast.Results) != 2 || disconnected.Disconnected != 1 {
		t.Fatalf("answers %+v %+v %+v %+v: want 1 delivered, 1 connection of 1 user, 2 results, 1 disconnected", sent, count, broadcast, disconnected)
	}
	alice.expectUserMessage(t, "alice", sent.MessageID, sendData)
	got := map[string]string{}
	for range 2 {
		var m struct{ Topic, ID string }
		if err := json.Unmarshal(alice.nextRaw(t), &m); err != nil {
			t.Fatal(err)
		}
		got[m.Topic] = m.ID
	}
	for _, r := range broadcast.Results {
		if got[r.Topic] != r.MessageID {
			t.Errorf("the browser got %v, want message %s of %s", got, r.MessageID, r.Topic)
		}
	}
	alice.expectClosedAfter(t, `{"type":"disconnect","reason":"signed out","reconnect":false}`)
}

// grpcurlModule is the grpcurl the docs' grpcurl examples run with, at a
// pinned version. It is a tool of this test, fetched from the Go module
// proxy the way the TypeScript example's packages come from npm, not a
// dependency in go.mod.
const grpcurlModule = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3"

// TestReadmeGrpcurlExamples runs docs/publishing.md's grpcurl blocks as
// written, with a real grpcurl first on PATH, each against its own
// devstack: publish, list and health; the user calls; and the API-key
// block, with the key in $API_KEY as the page writes it, on a stack with
// API_KEYS, where the page's health check must still answer without one.
func TestReadmeGrpcurlExamples(t *testing.T) {
	t.Parallel()
	blocks := docBlocks(t, "docs/publishing.md")
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("the API-key example needs curl: %v", err)
	}
	// Built once for the subtests. go install would link grpcurl anew on
	// every run; go run keeps the executable it links in Go's build cache,
	// and with -exec cp, instead of running it, copies it here.
	bin := t.TempDir()
	run(t, t.TempDir(), "go", "run", "-exec", "cp", grpcurlModule, filepath.Join(bin, "grpcurl"))
	env := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}

	t.Run("publish", func(t *testing.T) {
		t.Parallel()
		e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
		browser := e.dial(t, "demo")
		local := e.localAddrs(t, "grpcurl", readmeBlock(t, blocks, "grpcurl"))
		out := shellEnv(t, t.TempDir(), env, local)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the grpcurl example as run:\n%s\nprinted:\n%s", local, out)
			}
		})
		var (
			published struct {
				MessageID string `json:"messageId"`
				Delivered int    `json:"delivered"`
			}
			listed struct {
				Subscribers []struct{ ConnectionID string } `json:"subscribers"`
			}
			health struct{ Status string }
		)
		decodeAnswers(t, out, &published, &listed, &health)
		if published.MessageID == "" || published.Delivered != 1 || len(listed.Subscribers) != 1 || health.Status != "SERVING" {
			t.Fatalf("answers %+v %+v %+v: want a message id delivered to 1, 1 subscriber, SERVING", published, listed, health)
		}
		browser.expectMessage(t, "demo", published.MessageID, `{"hello":"grpc"}`, nil)
	})

	t.Run("users", func(t *testing.T) {
		t.Parallel()
		testUserExamples(t, blocks, "grpcurl-users", `{"hello":"grpc"}`, env)
	})

	t.Run("api key", func(t *testing.T) {
		t.Parallel()
		e := start(t, map[string]string{
			"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
			"API_KEYS": "other-key," + testAPIKey,
		})
		browser := e.dial(t, "demo")
		local := e.localAddrs(t, "api-key", readmeBlock(t, blocks, "api-key"))
		out := shellEnv(t, t.TempDir(), append(env, "API_KEY="+testAPIKey), local)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the api-key example as run:\n%s\nprinted:\n%s", local, out)
			}
		})
		var rest, grpc struct {
			MessageID string `json:"messageId"`
		}
		decodeAnswers(t, out, &rest, &grpc)
		if rest.MessageID == "" || grpc.MessageID == "" {
			t.Fatalf("answers %+v %+v: want a message id from each", rest, grpc)
		}
		browser.expectMessage(t, "demo", rest.MessageID, `{"hello":"world"}`, nil)
		browser.expectMessage(t, "demo", grpc.MessageID, `{"hello":"grpc"}`, nil)

		// The page's health check, as written in the grpcurl block, with
		// no key anywhere in its environment.
		var check string
		for line := range strings.Lines(readmeBlock(t, blocks, "grpcurl")) {
			if strings.Contains(line, "grpc.health.v1.Health/Check") {
				check = line
			}
		}
		if check == "" || strings.Contains(check, "$API_KEY") {
			t.Fatalf("the grpcurl block has no keyless grpc.health.v1.Health/Check line: %q", check)
		}
		var health struct{ Status string }
		decodeAnswers(t, shellEnv(t, t.TempDir(), append(env, "API_KEY="), e.localAddrs(t, "health", check)), &health)
		if health.Status != "SERVING" {
			t.Fatalf("the health check without a key on a stack with API_KEYS: %+v, want SERVING", health)
		}
	})
}

// localAddrs is the example code with the default addresses the docs show
// replaced by this stack's own; an example that names neither fails.
func (e *e2e) localAddrs(t *testing.T, name, code string) string {
	t.Helper()
	local := strings.NewReplacer("127.0.0.1:9090", e.stack.GRPCAddr, "127.0.0.1:8081", e.stack.HTTPAddr).Replace(code)
	if local == code {
		t.Fatalf("the %s example names neither 127.0.0.1:9090 nor 127.0.0.1:8081:\n%s", name, code)
	}
	return local
}

// decodeAnswers decodes an example's output, one JSON value per call in
// order, into answers, and fails if anything is left over.
func decodeAnswers(t *testing.T, out string, answers ...any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	for i, v := range answers {
		if err := dec.Decode(v); err != nil {
			t.Fatalf("the example's answer %d of %d: %v", i+1, len(answers), err)
		}
	}
	if dec.More() {
		t.Fatalf("the example printed more than its %d answers", len(answers))
	}
}

// docBlocks maps each readme-test marker's name in doc to its code block.
func docBlocks(t *testing.T, doc string) map[string]string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot, doc))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readmeBlocks(text)
	if err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	return blocks
}

// readmeFence is a marker comment and the fenced code block right after it.
var readmeFence = regexp.MustCompile("(?s)<!-- readme-test: ([a-z-]+) -->\n```[a-z]*\n(.*?\n)```\n")

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

// readmeBlock is the code block marked name in one of exampleDocs.
func readmeBlock(t *testing.T, blocks map[string]string, name string) string {
	t.Helper()
	b, ok := blocks[name]
	if !ok {
		t.Fatalf("none of %s has a code block marked <!-- readme-test: %s -->", strings.Join(exampleDocs, ", "), name)
	}
	return b
}

// projectDir is an empty directory outside the repository for a reader's
// own project: nothing of the repository's go.mod or node_modules is in
// reach there, only what the README's steps set up.
func projectDir(t *testing.T) string {
	dir := t.TempDir()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the temporary directory %s is inside the repository", dir)
	}
	return dir
}

// runGo sets up a module as the README says (go.mod requiring and replacing
// this one), writes main.go and runs it.
func runGo(t *testing.T, b map[string]string) string {
	dir := projectDir(t)
	shell(t, dir, readmeBlock(t, b, "go-setup"))
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(readmeBlock(t, b, "go-mod")) {
		if line = strings.TrimSpace(line); line != "" && !strings.Contains(string(gomod), line+"\n") {
			t.Errorf("the README says the setup adds %q to go.mod, but it reads:\n%s", line, gomod)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(readmeBlock(t, b, "go")), 0o644); err != nil {
		t.Fatal(err)
	}
	return shell(t, dir, readmeBlock(t, b, "go-run"))
}

// runTypeScript sets up an npm project as the README says (installing from
// the registry, linking the clone's gen/ts), writes its tsconfig.json and
// publish.ts, compiles and runs it, and checks that nothing was written into
// gen/ts, which make generate would delete.
func runTypeScript(t *testing.T, b map[string]string) string {
	setup := readmeBlock(t, b, "typescript-setup")
	checkNpmPins(t, setup)
	dir := projectDir(t)
	shell(t, dir, setup)
	for name, block := range map[string]string{"tsconfig.json": "typescript-tsconfig", "publish.ts": "typescript"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(readmeBlock(t, b, block)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := shell(t, dir, readmeBlock(t, b, "typescript-run"))
	err := filepath.WalkDir(filepath.Join(repoRoot, "gen", "ts"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(path, ".ts") {
			t.Errorf("the TypeScript example wrote %s into the clone", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// npmPin is a package@version argument of npm install.
var npmPin = regexp.MustCompile(`(?:^|\s)(@?[a-z0-9][a-z0-9._/-]*)@([0-9][^\s]*)`)

// checkNpmPins checks that the README installs the runtime gen/ts was
// generated for: the versions package.json pins, not others.
func checkNpmPins(t *testing.T, setup string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatalf("package.json: %v", err)
	}
	shared := 0
	for _, m := range npmPin.FindAllStringSubmatch(setup, -1) {
		if pinned, ok := pkg.DevDependencies[m[1]]; ok {
			shared++
			if m[2] != pinned {
				t.Errorf("the README installs %s@%s, package.json pins %s", m[1], m[2], pinned)
			}
		}
	}
	if shared == 0 {
		t.Errorf("the README's TypeScript setup installs none of package.json's packages at a version:\n%s", setup)
	}
}

func runCurl(t *testing.T, b map[string]string) string {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("the REST example needs curl: %v", err)
	}
	return shell(t, t.TempDir(), readmeBlock(t, b, "curl"))
}

// shell runs a README shell block in dir as bash would run a script of it,
// stopping at the first failing command.
func shell(t *testing.T, dir, code string) string {
	t.Helper()
	return shellEnv(t, dir, nil, code)
}

// shellEnv is shell with env added to the test's environment.
func shellEnv(t *testing.T, dir string, env []string, code string) string {
	t.Helper()
	return runEnv(t, dir, env, "bash", "-eu", "-o", "pipefail", "-c", code)
}

// run runs a command in dir and returns its standard output; any failure
// fails the test with everything the command printed.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	return runEnv(t, dir, nil, name, args...)
}

// runEnv is run with env added to the test's environment (a later entry
// wins over an earlier one of the same name).
func runEnv(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	// Generous: a setup step may download modules or npm packages and
	// build gRPC on a busy machine; the bound only stops a hung command.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}
