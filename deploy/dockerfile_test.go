package deploy

import (
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"go/types"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/wsgateway/wsgateway/internal/config"
)

// No Docker engine runs where the tests do, so the Dockerfile is read with
// BuildKit's own parser rather than built: its build must be `make build`'s
// (which CI runs), and its final image non-root, reachable and probed.

const publisherPkg = "./services/publisher"

// image holds the texts the image is made from, so that a case can break one.
type image struct{ dockerfile, makefile, dockerignore string }

// parsed is what the checks read: the stages' FROM images and names, the
// go build and the stage running it, and the final stage's instructions.
type parsed struct {
	from, names []string
	build       goBuild
	buildStage  string
	final       map[string]*parser.Node // its last of each instruction
	copies      [][]string              // of the final stage: flags, from, to
	env         [][]string
	exposed     []string
	im          image
}

// args lists an instruction's arguments, none for a missing one.
func args(n *parser.Node) (a []string) {
	for x := n; x != nil && x.Next != nil; x = x.Next {
		a = append(a, x.Next.Value)
	}
	return append(a, "", "", "") // so that a[i] reads "" for a missing one
}

func (im image) parse() (p parsed, err error) {
	res, err := parser.Parse(strings.NewReader(im.dockerfile))
	if err != nil {
		return p, err
	}
	p.im = im
	for _, n := range res.AST.Children {
		a := args(n)
		switch cmd := strings.ToLower(n.Value); cmd {
		case "from":
			p.from, p.names, p.final, p.copies, p.env, p.exposed = append(p.from, a[0]), append(p.names, a[2]), map[string]*parser.Node{}, nil, nil, nil
		case "run":
			if b := parseGoBuild(a[0]); b.pkg != "" && p.buildStage == "" {
				p.build, p.buildStage = b, p.names[len(p.names)-1]
			}
		case "copy":
			p.copies = append(p.copies, append([]string{strings.Join(n.Flags, " ")}, a[:2]...))
		case "env":
			p.env = append(p.env, a) // name, value, "=", ...
		case "expose":
			p.exposed = append(p.exposed, strings.Fields(strings.Join(a, " "))...)
		}
		if p.final != nil {
			p.final[strings.ToLower(n.Value)] = n
		}
	}
	return p, nil
}

// goBuild is a `[VAR=value ...] go build [flags] -o out pkg` command line.
type goBuild struct {
	env      map[string]string
	flags    []string
	out, pkg string
}

func parseGoBuild(line string) (b goBuild) {
	words, _ := shell.NewLex('\\').ProcessWords(line, shell.EnvsFromSlice(nil))
	b.env = map[string]string{}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		k, v, _ := strings.Cut(words[0], "=")
		b.env[k], words = v, words[1:]
	}
	if len(words) < 3 || words[0] != "go" || words[1] != "build" {
		return goBuild{}
	}
	b.pkg = words[len(words)-1]
	for i := 2; i < len(words)-1; i++ {
		if words[i] == "-o" {
			i++
			b.out = words[i]
		} else {
			b.flags = append(b.flags, words[i])
		}
	}
	return b
}

// makeBuild is the publisher's build as `make build` runs it, expanded by make.
func (im image) makeBuild() (goBuild, error) {
	cmd := exec.Command("make", "-n", "-f", "-", "build")
	cmd.Dir, cmd.Stdin = "..", strings.NewReader(im.makefile)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if b := parseGoBuild(l); err == nil && b.pkg == publisherPkg {
			return b, nil
		}
	}
	return goBuild{}, fmt.Errorf("make -n build (%v) builds no %s:\n%s", err, publisherPkg, out)
}

// entrypoint is the built binary's path in the final image, if the final
// stage copies it there and runs it in exec form.
func (p parsed) entrypoint() (string, error) {
	ep := p.final["entrypoint"]
	for _, c := range p.copies {
		if slices.Equal(c, []string{"--from=" + p.buildStage, p.build.out, args(ep)[0]}) && ep.Attributes["json"] {
			return c[2], nil
		}
	}
	return "", fmt.Errorf("the final stage must COPY --from=%s %s and run it as its exec-form ENTRYPOINT", p.buildStage, p.build.out)
}

var checks = map[string]func(t *testing.T, p parsed) error{
	"base images pinned": func(t *testing.T, p parsed) error {
		for i, from := range p.from {
			ref, err := reference.ParseNormalizedNamed(from)
			_, tagged := ref.(reference.Tagged)
			_, digested := ref.(reference.Digested)
			if !slices.Contains(p.names[:i], from) && (err != nil || !tagged || !digested) {
				return fmt.Errorf("FROM %s: pin a tag and its digest (image:tag@sha256:...)", from)
			}
		}
		return nil
	},
	"built as make build": func(t *testing.T, p parsed) error {
		want, err := p.im.makeBuild()
		switch got := p.build; {
		case err != nil:
			return err
		case got.pkg != publisherPkg:
			return fmt.Errorf("go build %q, want %s", got.pkg, publisherPkg)
		case !slices.Equal(got.flags, want.flags):
			return fmt.Errorf("go build flags %q, the Makefile's %q", got.flags, want.flags)
		case got.env["CGO_ENABLED"] != "0" || want.env["CGO_ENABLED"] != "0":
			return fmt.Errorf("want CGO_ENABLED=0 in both builds: the final image has no libc")
		}
		return nil
	},
	"entrypoint is the build": func(t *testing.T, p parsed) error {
		_, err := p.entrypoint()
		return err
	},
	"non-root": func(t *testing.T, p parsed) error {
		// By number, so that Kubernetes' runAsNonRoot can verify it.
		uid, _, _ := strings.Cut(args(p.final["user"])[0], ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			return fmt.Errorf("the final stage's USER %q: want a non-root numeric uid", uid)
		}
		return nil
	},
	"healthcheck": func(t *testing.T, p parsed) error {
		entry, err := p.entrypoint()
		hc := p.final["healthcheck"]
		a := slices.DeleteFunc(args(hc), func(s string) bool { return s == "" })
		// Exec form, for the image has no shell.
		if err != nil || hc == nil || !hc.Attributes["json"] || len(a) < 2 || a[0] != "CMD" || a[1] != entry || !slices.Contains(a, "-healthcheck") {
			return fmt.Errorf("want HEALTHCHECK CMD [%q, \"-healthcheck\"]: %v", entry, err)
		}
		declared := declaredFlags(t)
		for _, arg := range a[2:] {
			if name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "="); !slices.Contains(declared, name) {
				return fmt.Errorf("HEALTHCHECK passes %s, a flag the publisher does not declare", arg)
			}
		}
		return nil
	},
	"listens on every interface": func(t *testing.T, p parsed) error {
		env := map[string]string{}
		for _, a := range p.env {
			for i := 0; i+1 < len(a) && a[i] != ""; i += 3 {
				env[a[i]] = a[i+1]
			}
		}
		defaults := map[string]string{}
		for _, s := range config.Settings {
			defaults[s.Name] = s.Default
		}
		for k := range env {
			if _, ok := defaults[k]; !ok {
				return fmt.Errorf("ENV %s is not a setting the publisher reads", k)
			}
		}
		for _, name := range []string{"GRPC_ADDR", "HTTP_ADDR"} {
			// The default host is loopback, unreachable from outside.
			host, port, err := net.SplitHostPort(env[name])
			_, want, _ := net.SplitHostPort(defaults[name])
			if err != nil || !slices.Contains([]string{"", "0.0.0.0", "::"}, host) || port != want || !slices.Contains(p.exposed, port) {
				return fmt.Errorf("want ENV %s=0.0.0.0:%s and EXPOSE %[2]s, got %q and %q", name, want, env[name], p.exposed)
			}
		}
		return nil
	},
	"context holds the sources": func(t *testing.T, p parsed) error {
		patterns, err := ignorefile.ReadAll(strings.NewReader(p.im.dockerignore))
		pm, err2 := patternmatcher.New(patterns)
		for _, f := range publisherSources(t) {
			if ignored, err3 := pm.MatchesOrParentMatches(f); ignored || err != nil || err2 != nil || err3 != nil {
				return fmt.Errorf(".dockerignore excludes %s, which the publisher's build reads (%v %v %v)", f, err, err2, err3)
			}
		}
		return nil
	},
}

// publisherSources lists, relative to the repository, every file of the
// module that the publisher's build reads.
func publisherSources(t *testing.T) []string {
	out, err := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"."+publisherPkg).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, _ := filepath.Abs("..")
	files := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, _ := filepath.Rel(root, f)
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

// declaredFlags lists the flags that the publisher's build declares with the
// flag package: flag.Bool("name", ...) or flag.BoolVar(&v, "name", ...).
func declaredFlags(t *testing.T) (names []string) {
	for _, file := range publisherSources(t) {
		if !strings.HasSuffix(file, ".go") {
			continue
		}
		f, err := goparser.ParseFile(token.NewFileSet(), filepath.Join("..", file), nil, goparser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if ok && len(call.Args) > 1 && strings.HasPrefix(types.ExprString(call.Fun), "flag.") {
				for _, arg := range call.Args[:2] {
					if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						name, _ := strconv.Unquote(lit.Value)
						names = append(names, name)
					}
				}
			}
			return true
		})
	}
	return names
}

func readImage(t *testing.T) image {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return image{read("Dockerfile"), read("Makefile"), read(".dockerignore")}
}

func (im image) check(t *testing.T, name string) error {
	p, err := im.parse()
	if err != nil {
		return err
	}
	return checks[name](t, p)
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	im := readImage(t)
	for name := range checks {
		if err := im.check(t, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestDockerfileChecksCatchBreakage breaks a copy of the Dockerfile, the
// Makefile or .dockerignore, in ways no version bump touches, and wants
// the property's check to fail.
func TestDockerfileChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ check, file, re, repl string }{
		{"base images pinned", "Dockerfile", `@sha256:[0-9a-f]+`, ""},
		{"base images pinned", "Dockerfile", `:[\w.-]+@sha256`, "@sha256"},
		{"built as make build", "Makefile", `(?m)^GO_BUILD_FLAGS\s*:?=`, "$0 -race"},
		{"built as make build", "Dockerfile", `go build`, "go build -race"},
		{"built as make build", "Dockerfile", `CGO_ENABLED=0`, "CGO_ENABLED=1"},
		{"built as make build", "Makefile", `CGO_ENABLED=0`, "CGO_ENABLED=1"},
		{"built as make build", "Dockerfile", regexp.QuoteMeta(publisherPkg) + `\b`, "./services/devstack"},
		{"entrypoint is the build", "Dockerfile", `(?m)^ENTRYPOINT .*$`, `ENTRYPOINT ["/bin/true"]`},
		{"entrypoint is the build", "Dockerfile", `(?m)^ENTRYPOINT \["(.*)"\]$`, `ENTRYPOINT $1`}, // shell form
		{"non-root", "Dockerfile", `(?m)^USER .*$`, "USER root"},
		{"non-root", "Dockerfile", `(?m)^USER .*$`, "USER 0:0"},
		{"non-root", "Dockerfile", `(?m)^USER .*$`, ""},
		{"healthcheck", "Dockerfile", `CMD \[.*\]`, "CMD /publisher -healthcheck"}, // shell form
		{"healthcheck", "Dockerfile", `"-healthcheck"`, `"-healthcheck", "-no-such-flag"`},
		{"healthcheck", "Dockerfile", `, "-healthcheck"`, ""},
		{"listens on every interface", "Dockerfile", `(GRPC_ADDR=)[^:\s]*`, "${1}127.0.0.1"},
		{"listens on every interface", "Dockerfile", `(?m)^EXPOSE .*$`, "EXPOSE 1"},
		{"listens on every interface", "Dockerfile", `(?m)^ENV `, "ENV NO_SUCH_SETTING=1 "},
		{"context holds the sources", ".dockerignore", `$`, "\n**/*.go\n"},
		{"context holds the sources", ".dockerignore", `$`, "\ngo.sum\n"},
	} {
		t.Run(c.check+": "+c.re, func(t *testing.T) {
			t.Parallel()
			broken := readImage(t)
			text := map[string]*string{"Dockerfile": &broken.dockerfile, "Makefile": &broken.makefile, ".dockerignore": &broken.dockerignore}[c.file]
			orig := *text
			if *text = regexp.MustCompile(c.re).ReplaceAllString(orig, c.repl); *text == orig {
				t.Fatalf("%s has nothing matching %s to break", c.file, c.re)
			}
			err := broken.check(t, c.check)
			if err == nil {
				t.Fatalf("%s: not caught after %s -> %q in %s", c.check, c.re, c.repl, c.file)
			}
			t.Logf("caught: %v", err)
		})
	}
}
