package deploy

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wsgateway/wsgateway/internal/config"
)

// No Docker engine runs where the tests do, so the Dockerfile is read
// rather than built: its build must be the Makefile's (which CI runs), and
// its final image small, non-root and reachable.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
}

// stage is one FROM and what follows it.
type stage struct {
	image, name string
	body        []instruction
}

func parseDockerfile(text string) []stage {
	var (
		stages []stage
		line   strings.Builder
	)
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue // Docker skips comments inside continuations too
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			line.WriteString(s + " ")
			continue
		}
		line.WriteString(l)
		cmd, args, _ := strings.Cut(line.String(), " ")
		line.Reset()
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			words := dropOptions(strings.Fields(in.args))
			st := stage{image: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	return stages
}

// dropOptions drops an instruction's leading --options (--platform,
// --mount, --from, --interval ...).
func dropOptions(words []string) []string {
	for len(words) > 0 && strings.HasPrefix(words[0], "--") {
		words = words[1:]
	}
	return words
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// shellWords splits a command line as a POSIX shell would, quotes and
// backslashes included, without expanding anything.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		word  strings.Builder
		in    bool // inside a word
		quote rune
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == '\'':
			word.WriteRune(r)
		case r == '\\' && i+1 < len(rs) && (quote == 0 || strings.ContainsRune(`"\$`+"`", rs[i+1])):
			i++
			word.WriteRune(rs[i])
			in = true
		case quote == '"':
			word.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				words = append(words, word.String())
				word.Reset()
				in = false
			}
		default:
			word.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if in {
		words = append(words, word.String())
	}
	return words, nil
}

// goBuild is a parsed `[VAR=value ...] go build [flags] -o out pkg`.
type goBuild struct {
	env   map[string]string
	flags []string // all but -o
	out   string
	pkg   string
}

func parseGoBuild(line string) (goBuild, error) {
	words, err := shellWords(line)
	if err != nil {
		return goBuild{}, err
	}
	b := goBuild{env: map[string]string{}}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		k, v, _ := strings.Cut(words[0], "=")
		b.env[k] = v
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		return b, fmt.Errorf("not a go build command: %q", line)
	}
	for i := 2; i < len(words); i++ {
		switch w := words[i]; {
		case w == "-o" && i+1 < len(words):
			i++
			b.out = words[i]
		case strings.HasPrefix(w, "-o="):
			b.out = strings.TrimPrefix(w, "-o=")
		case strings.HasPrefix(w, "-"):
			b.flags = append(b.flags, w)
		case b.pkg != "":
			return b, fmt.Errorf("more than one package in %q", line)
		default:
			b.pkg = w
		}
	}
	return b, nil
}

// makeBuild returns the Makefile's command that builds pkg, its
// variables expanded.
func makeBuild(makefile, pkg string) (string, error) {
	vars := map[string]string{}
	assign := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*[:?]?=\s*(.*)$`)
	for _, l := range strings.Split(makefile, "\n") {
		if m := assign.FindStringSubmatch(l); m != nil {
			vars[m[1]] = m[2]
		}
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, l := range strings.Split(makefile, "\n") {
		if !strings.HasPrefix(l, "\t") || !strings.HasSuffix(strings.TrimSpace(l), " "+pkg) || !strings.Contains(l, "go build") {
			continue
		}
		l = strings.TrimSpace(l)
		for range 10 { // variables may name variables
			l = ref.ReplaceAllStringFunc(l, func(r string) string { return vars[ref.FindStringSubmatch(r)[1]] })
		}
		return strings.ReplaceAll(l, "$$", "$"), nil
	}
	return "", fmt.Errorf("Makefile: no recipe line builds %s", pkg)
}

// declaredFlags lists the command-line flags the Go files of dir declare
// with the flag package.
func declaredFlags(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "flag" {
				return true
			}
			// flag.Bool("name", ...) or flag.BoolVar(&v, "name", ...)
			for _, arg := range call.Args[:min(2, len(call.Args))] {
				if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					name, _ := strconv.Unquote(lit.Value)
					names = append(names, name)
					break
				}
			}
			return true
		})
	}
	return names, nil
}

// publisherSources lists, relative to the repository, every file the
// publisher's build reads from the module.
func publisherSources() ([]string, error) {
	out, err := exec.Command("go", "list", "-deps",
		"-f", `{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"../services/publisher").Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	files := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			return nil, err
		}
		files = append(files, filepath.ToSlash(rel))
	}
	return files, nil
}

// dockerignored tells whether a .dockerignore excludes file: a pattern
// excludes what it matches and everything under it, "**" matches any
// number of directories, and a later "!pattern" takes a match back.
func dockerignored(dockerignore, file string) bool {
	excluded := false
	for _, p := range strings.Split(dockerignore, "\n") {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		p, keep := strings.CutPrefix(p, "!")
		if matchUnder(strings.Split(path.Clean(strings.TrimPrefix(p, "/")), "/"), strings.Split(file, "/")) {
			excluded = !keep
		}
	}
	return excluded
}

// matchUnder matches a pattern's segments against a path or its parents.
func matchUnder(pattern, file []string) bool {
	if len(pattern) == 0 {
		return true
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(file); i++ {
			if matchUnder(pattern[1:], file[i:]) {
				return true
			}
		}
		return false
	}
	if len(file) == 0 {
		return false
	}
	ok, _ := filepath.Match(pattern[0], file[0])
	return ok && matchUnder(pattern[1:], file[1:])
}

// image is the publisher image as the checks need it.
type image struct {
	dockerfile, makefile, dockerignore string
	flags                              []string // the publisher's command-line flags
	sources                            []string // what its build reads
}

var (
	pinned = regexp.MustCompile(`^[^:@\s]+:([^:@\s]+)@sha256:[0-9a-f]{64}$`)
	uid    = regexp.MustCompile(`^([0-9]+)(:[0-9]+)?$`)
)

func (im image) check() problems {
	var p problems
	stages := parseDockerfile(im.dockerfile)
	if len(stages) < 2 {
		p.addf("want a multi-stage build: a Go toolchain stage and a small final one")
		return p
	}
	var names []string
	for _, s := range stages {
		if slices.Contains(names, s.image) {
			continue // FROM an earlier stage
		}
		if m := pinned.FindStringSubmatch(s.image); m == nil || m[1] == "latest" {
			p.addf("FROM %s: pin a version tag and its digest (image:tag@sha256:...)", s.image)
		}
		names = append(names, s.name)
	}

	build, buildStage := im.checkBuild(stages, &p)
	final := stages[len(stages)-1]
	entry := im.checkEntrypoint(final, build, buildStage, &p)
	im.checkListeners(final, &p)
	im.checkUser(final, &p)
	im.checkHealthcheck(final, entry, &p)
	for _, f := range im.sources {
		if dockerignored(im.dockerignore, f) {
			p.addf(".dockerignore excludes %s, which the publisher's build reads", f)
		}
	}
	return p
}

// checkBuild wants the publisher built exactly as `make build` builds it.
func (im image) checkBuild(stages []stage, p *problems) (goBuild, string) {
	const pkg = "./services/publisher"
	mk, err := makeBuild(im.makefile, pkg)
	if err != nil {
		p.addf("%v", err)
		return goBuild{}, ""
	}
	want, err := parseGoBuild(mk)
	if err != nil {
		p.addf("Makefile: %v", err)
		return goBuild{}, ""
	}
	for _, s := range stages {
		for _, run := range s.all("RUN") {
			words := dropOptions(strings.Fields(run.args))
			if !strings.Contains(run.args, "go build") {
				continue
			}
			got, err := parseGoBuild(strings.Join(words, " "))
			if err != nil {
				p.addf("RUN %s: %v", run.args, err)
				return got, s.name
			}
			if got.pkg != pkg {
				p.addf("RUN %s: builds %q, want %s", run.args, got.pkg, pkg)
			}
			if !slices.Equal(got.flags, want.flags) {
				p.addf("go build flags %q differ from the Makefile's %q", got.flags, want.flags)
			}
			if got.env["CGO_ENABLED"] != "0" || want.env["CGO_ENABLED"] != "0" {
				p.addf("want CGO_ENABLED=0 in both builds (Dockerfile %q, Makefile %q): the final image has no libc",
					got.env["CGO_ENABLED"], want.env["CGO_ENABLED"])
			}
			return got, s.name
		}
	}
	p.addf("no RUN builds the publisher with go build")
	return goBuild{}, ""
}

// checkEntrypoint wants the final image to run the binary the build
// produced, and returns its path there.
func (im image) checkEntrypoint(final stage, build goBuild, buildStage string, p *problems) string {
	var copied string
	for _, c := range final.all("COPY") {
		if words := strings.Fields(c.args); len(words) == 3 && words[0] == "--from="+buildStage && words[1] == build.out {
			copied = words[2]
		}
	}
	entry := execForm(final, "ENTRYPOINT")
	if copied == "" || len(entry) == 0 || entry[0] != copied {
		p.addf("the final stage must COPY --from=%s %s and run it as its exec-form ENTRYPOINT (got COPY to %q, ENTRYPOINT %q)",
			buildStage, build.out, copied, entry)
	}
	return copied
}

// execForm reads the JSON form of the last cmd instruction of s.
func execForm(s stage, cmd string) []string {
	ins := s.all(cmd)
	if len(ins) == 0 {
		return nil
	}
	var argv []string
	if json.Unmarshal([]byte(ins[len(ins)-1].args), &argv) != nil {
		return nil
	}
	return argv
}

// checkListeners wants the servers listening beyond loopback, on the
// ports the code defaults to, and those ports exposed.
func (im image) checkListeners(final stage, p *problems) {
	env := map[string]string{}
	for _, e := range final.all("ENV") {
		words, err := shellWords(e.args)
		if err != nil {
			p.addf("ENV %s: %v", e.args, err)
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				p.addf("ENV %s: write ENV NAME=value", e.args)
			}
			env[k] = v
		}
	}
	settings := map[string]config.Setting{}
	for _, s := range config.Settings {
		settings[s.Name] = s
	}
	for k := range env {
		if _, ok := settings[k]; !ok {
			p.addf("ENV %s is not a setting the publisher reads (internal/config.Settings)", k)
		}
	}
	var exposed []string
	for _, e := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(e.args)...)
	}
	for _, name := range []string{"GRPC_ADDR", "HTTP_ADDR"} {
		host, port, err := net.SplitHostPort(env[name])
		_, defaultPort, _ := net.SplitHostPort(settings[name].Default)
		if err != nil || (host != "0.0.0.0" && host != "" && host != "::") || port != defaultPort {
			p.addf("ENV %s=%q: want 0.0.0.0:%s, the default port on every interface (the default host is loopback)", name, env[name], defaultPort)
		}
		if !slices.Contains(exposed, port) {
			p.addf("EXPOSE %q lacks %s's port %s", exposed, name, port)
		}
	}
}

func (im image) checkUser(final stage, p *problems) {
	users := final.all("USER")
	if len(users) == 0 {
		p.addf("the final stage sets no USER: the container would run as whatever the base image says")
		return
	}
	m := uid.FindStringSubmatch(users[len(users)-1].args)
	if m == nil || m[1] == "0" {
		p.addf("USER %s: want a non-root numeric uid[:gid], which Kubernetes' runAsNonRoot can verify", users[len(users)-1].args)
	}
}

// checkHealthcheck wants a probe that works without a shell: the binary
// itself, with a flag it declares.
func (im image) checkHealthcheck(final stage, entry string, p *problems) {
	hc := final.all("HEALTHCHECK")
	if len(hc) == 0 {
		p.addf("no HEALTHCHECK")
		return
	}
	_, cmd, ok := strings.Cut(hc[len(hc)-1].args, "CMD ")
	var argv []string
	if !ok || json.Unmarshal([]byte(cmd), &argv) != nil || len(argv) == 0 || argv[0] != entry {
		p.addf("HEALTHCHECK %s: want CMD [%q, ...] in exec form: the image has no shell", hc[len(hc)-1].args, entry)
		return
	}
	for _, arg := range argv[1:] {
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if strings.HasPrefix(arg, "-") && !slices.Contains(im.flags, name) {
			p.addf("HEALTHCHECK runs %s %s, but services/publisher declares no -%s flag", entry, arg, name)
		}
	}
}

func readImage(t *testing.T) image {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	flags, err := declaredFlags("../services/publisher")
	if err != nil {
		t.Fatal(err)
	}
	sources, err := publisherSources()
	if err != nil {
		t.Fatal(err)
	}
	return image{
		dockerfile:   read("../Dockerfile"),
		makefile:     read("../Makefile"),
		dockerignore: read("../.dockerignore"),
		flags:        flags,
		sources:      sources,
	}
}

func TestDockerfileMatchesBuild(t *testing.T) {
	t.Parallel()
	for _, problem := range readImage(t).check() {
		t.Error(problem)
	}
}

// TestDockerfileChecksCatchBreakage breaks the Dockerfile, the Makefile or
// .dockerignore and wants each caught.
func TestDockerfileChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	im := readImage(t)
	for _, c := range []struct {
		name, file, old, new, want string
	}{
		{"latest", "Dockerfile", "golang:1.26.8-bookworm@", "golang:latest@", "pin a version tag"},
		{"no digest", "Dockerfile", "static-debian12:nonroot@sha256:", "static-debian12:nonroot#", "pin a version tag"},
		{"flags drift", "Makefile", `GO_BUILD_FLAGS := -trimpath`, `GO_BUILD_FLAGS := -trimpath -race`, "differ from the Makefile's"},
		{"flags drift in the image", "Dockerfile", `-trimpath -ldflags="-s -w"`, `-ldflags="-s -w"`, "differ from the Makefile's"},
		{"cgo", "Dockerfile", "CGO_ENABLED=0 GOOS", "CGO_ENABLED=1 GOOS", "want CGO_ENABLED=0"},
		{"another binary", "Dockerfile", "-o /out/publisher ./services/publisher", "-o /out/publisher ./services/devstack", "want ./services/publisher"},
		{"entrypoint not the build", "Dockerfile", `ENTRYPOINT ["/publisher"]`, `ENTRYPOINT ["/devstack"]`, "run it as its exec-form ENTRYPOINT"},
		{"root", "Dockerfile", "USER 65532:65532", "USER root", "want a non-root numeric uid"},
		{"loopback", "Dockerfile", "GRPC_ADDR=0.0.0.0:9090", "GRPC_ADDR=127.0.0.1:9090", "ENV GRPC_ADDR"},
		{"port not exposed", "Dockerfile", "EXPOSE 9090 8081", "EXPOSE 8081", "lacks GRPC_ADDR's port 9090"},
		{"unknown setting", "Dockerfile", "ENV GRPC_ADDR=", "ENV LISTEN=:1 GRPC_ADDR=", "ENV LISTEN is not a setting"},
		{"shell healthcheck", "Dockerfile", `CMD ["/publisher", "-healthcheck"]`, `CMD curl -f http://127.0.0.1:8081/healthz`, "in exec form"},
		{"undeclared flag", "Dockerfile", `"-healthcheck"]`, `"-probe"]`, "declares no -probe flag"},
		{"embedded files ignored", ".dockerignore", "\nbuild\n", "\nbuild\ngen/openapiv2\n", ".dockerignore excludes gen/openapiv2/"},
		{"sources ignored", ".dockerignore", "\nbuild\n", "\nbuild\n**/*.go\n", ".dockerignore excludes services/publisher/main.go"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			broken := im
			text := map[string]*string{"Dockerfile": &broken.dockerfile, "Makefile": &broken.makefile, ".dockerignore": &broken.dockerignore}[c.file]
			if !strings.Contains(*text, c.old) {
				t.Fatalf("%s no longer contains %q: update this case", c.file, c.old)
			}
			*text = strings.Replace(*text, c.old, c.new, 1)
			got := broken.check()
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Errorf("not caught: want a problem containing %q, got:\n%s", c.want, strings.Join(got, "\n"))
			}
		})
	}
}

func TestShellWords(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{`go build -ldflags="-s -w" ./x`, []string{"go", "build", "-ldflags=-s -w", "./x"}, false},
		{`a 'b c' d\ e "f\"g"`, []string{"a", "b c", "d e", `f"g`}, false},
		{`'it''s'`, []string{"its"}, false},
		{`""`, []string{""}, false},
		{`"open`, nil, true},
	} {
		got, err := shellWords(c.in)
		if (err != nil) != c.wantErr || !slices.Equal(got, c.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q (error %v)", c.in, got, err, c.want, c.wantErr)
		}
	}
}

func TestDockerignored(t *testing.T) {
	t.Parallel()
	const ignore = "# comment\n.git\nbuild\n**/node_modules\n*.test\ngen/**/*.json\n!gen/keep.json\n"
	for file, want := range map[string]bool{
		".git/config":                true,
		"build/publisher":            true,
		"web/node_modules/x/y.js":    true,
		"node_modules/a":             true,
		"x.test":                     true,
		"sub/x.test":                 false, // a pattern without ** matches from the root
		"gen/openapiv2/api.json":     true,
		"gen/keep.json":              false,
		"gen/openapi.go":             false,
		"services/publisher/main.go": false,
		"buildinfo/x.go":             false,
	} {
		if got := dockerignored(ignore, file); got != want {
			t.Errorf("dockerignored(%s) = %v, want %v", file, got, want)
		}
	}
}
