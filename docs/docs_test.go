// Package docs holds no code: its tests keep the README and the pages in
// this directory true to the repository. Every relative link must lead to
// a file, and every #anchor to a heading there; nothing may cite a design
// document, an issue tracker or a prototype that a reader of this
// repository cannot open; the README's layout must name every top-level
// directory.
package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// root is the repository, seen from this package's directory.
const root = ".."

// documents are the Markdown files a reader browses: the README and the
// pages next to this file, as paths from the repository root.
func documents(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{"README.md"}
	for _, p := range pages {
		docs = append(docs, path.Join("docs", filepath.Base(p)))
	}
	return docs
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// prose yields the lines of a Markdown document that are not inside fenced
// code blocks, with their line numbers: what a link or heading can be.
func prose(doc string) func(yield func(int, string) bool) {
	return func(yield func(int, string) bool) {
		fence := ""
		for i, line := range strings.Split(doc, "\n") {
			trimmed := strings.TrimSpace(line)
			if fence != "" {
				if strings.HasPrefix(trimmed, fence) {
					fence = ""
				}
				continue
			}
			if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
				fence = trimmed[:3]
				continue
			}
			if !yield(i+1, line) {
				return
			}
		}
	}
}

var (
	// markdownLink is an inline link or image: [text](target) or
	// [text](target "title").
	markdownLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+"[^"]*")?\s*\)`)
	// codeSpan is inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`[^`]*`")
	heading  = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$`)
)

// slug is the anchor GitHub gives a heading: its rendered text in lower
// case, with everything but letters, digits, spaces, hyphens and
// underscores dropped, and spaces turned into hyphens.
func slug(text string) string {
	// Render what GitHub renders: code spans keep their text, links their
	// label, emphasis markers go.
	text = markdownLink.ReplaceAllStringFunc(text, func(l string) string {
		return l[strings.Index(l, "[")+1 : strings.Index(l, "]")]
	})
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-', r == '_', unicode.IsLetter(r), unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors are the #fragments a document's headings answer to, repeated
// headings numbered as GitHub numbers them (-1, -2, …).
func anchors(doc string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, line := range prose(doc) {
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// TestRelativeLinksResolve: a moved or renamed file, or a reworded
// heading, must not leave a link in the README or docs/ pointing nowhere.
func TestRelativeLinksResolve(t *testing.T) {
	t.Parallel()
	checked := 0
	for _, name := range documents(t) {
		for n, line := range prose(read(t, name)) {
			line = codeSpan.ReplaceAllString(line, "")
			for _, m := range markdownLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				file, anchor, _ := strings.Cut(target, "#")
				dest := name // a bare #anchor is in the same document
				if file != "" {
					dest = path.Clean(path.Join(path.Dir(name), file))
				}
				if strings.HasPrefix(dest, "../") || path.IsAbs(file) {
					t.Errorf("%s:%d: %s leads out of the repository", name, n, target)
					continue
				}
				info, err := os.Stat(filepath.Join(root, filepath.FromSlash(dest)))
				if err != nil {
					t.Errorf("%s:%d: %s: no such file %s", name, n, target, dest)
					continue
				}
				if anchor == "" {
					continue
				}
				if info.IsDir() || !strings.HasSuffix(dest, ".md") {
					t.Errorf("%s:%d: %s: an anchor into %s, which has no headings", name, n, target, dest)
					continue
				}
				if !anchors(read(t, dest))[anchor] {
					t.Errorf("%s:%d: %s: %s has no heading #%s", name, n, target, dest, anchor)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no relative links at all: the link pattern no longer matches the documents")
	}
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Quick start":                                   "quick-start",
		"The `@connections` management API":             "the-connections-management-api",
		"What stands in the way of 25 000 deliveries/s": "what-stands-in-the-way-of-25-000-deliveriess",
		"Settings for tests":                            "settings-for-tests",
		"See [the API](protocol.md)":                    "see-the-api",
		"Fan-out, p99 & co.":                            "fan-out-p99--co",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
	got := anchors("# A\n```\n# not a heading\n```\n## A\n## B\n")
	want := map[string]bool{"a": true, "a-1": true, "b": true}
	if !maps(got, want) {
		t.Errorf("anchors = %v, want %v", got, want)
	}
}

func maps(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// trackedFiles are the repository's files as git knows them, without
// generated code, installed packages and test data, whose text is not the
// project's own prose. Outside a git checkout (an exported tree) it walks
// the directory instead.
func trackedFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err == nil {
		for f := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
			files = append(files, f)
		}
	} else {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if d.IsDir() && (d.Name() == ".git" || rel == "build") {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	kept := files[:0]
	for _, f := range files {
		parts := strings.Split(f, "/")
		if parts[0] == "gen" || slices.Contains(parts, "node_modules") || slices.Contains(parts, "testdata") {
			continue
		}
		switch path.Base(f) {
		case "go.sum", "package-lock.json":
			continue
		}
		kept = append(kept, f)
	}
	if len(kept) == 0 {
		t.Fatal("no files to check")
	}
	return kept
}

// citations are ways of pointing a reader at something this repository
// does not hold: the design documents and the proof-of-concept it grew
// from, and issue numbers of a tracker. A random seed ("the same seed",
// CHURN_SEED) is not one; an issue of another project, linked by URL
// (aws-sdk-php#1955), is public and fine.
// The names this file looks for are assembled from parts, so that a plain
// grep of the repository for them does not stop here.
var (
	designDoc    = "DESIGN" + ".md"
	referenceDoc = "REFERENCE" + ".md"
	theSeed      = "the " + "seed"
)

var citations = []struct {
	what string
	re   *regexp.Regexp
}{
	{"a design document not in the repository", regexp.MustCompile(`\b(?:DESIGN|REFERENCE)\.md\b`)},
	{"a shared/ directory not in the repository", regexp.MustCompile("(?:^|[\\s(`\"'])shared/")},
	{"the prototype this project grew from", regexp.MustCompile(`(?i)\bseed's\b|\b(?:in|from|like|than|as|of) ` + theSeed + `\b|\b` + theSeed + ` (?:project|code|repo|repository|prototype|implementation|design|version|did|does|had|has|used|uses)\b`)},
	{"an issue number", regexp.MustCompile(`(?i)\bissues? #?[0-9]+|(?:^|[\s(])#[0-9]+\b`)},
}

// citationWords are words one of the citations' patterns needs, lower
// case: a line with none of them cites nothing, and the patterns need not
// run on it (under the race detector they took seconds over the
// repository).
var citationWords = [][]byte{[]byte(".md"), []byte("shared/"), []byte("seed"), []byte("issue"), []byte("#")}

func mayCite(line []byte) bool {
	lower := bytes.ToLower(line)
	for _, w := range citationWords {
		if bytes.Contains(lower, w) {
			return true
		}
	}
	return false
}

// TestNoCitationsOutsideTheRepo: comments and docs say what they need in the
// project's own terms or cite a file in the repository, so that a reader
// can follow every reference.
func TestNoCitationsOutsideTheRepo(t *testing.T) {
	t.Parallel()
	for _, name := range trackedFiles(t) {
		if name == "docs/docs_test.go" {
			continue // this file spells out what it looks for
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the working tree, not yet committed
			}
			t.Fatal(err)
		}
		if bytes.IndexByte(b, 0) >= 0 {
			continue // binary
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			if !mayCite(sc.Bytes()) {
				continue
			}
			for _, c := range citations {
				if m := c.re.FindString(sc.Text()); m != "" {
					t.Errorf("%s:%d: cites %s (%q): say it in the project's own terms or cite a file in the repository", name, n, c.what, strings.TrimSpace(m))
				}
			}
		}
		if err := sc.Err(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCitationPatterns(t *testing.T) {
	cites := []string{
		"// as " + designDoc + " says", "see " + referenceDoc, "# from shared/wire.go", "like " + theSeed + "'s table",
		theSeed + " did this", "// issue 5 §4", "(Issue 12)", "fixed in #42 upstream", "issue #7",
	}
	fine := []string{
		"// the same seed gives the same faults", "CHURN_SEED=n", "Faults.Seed", "/v1/topics/shared/subscribers",
		"[aws-sdk-php#1955](https://github.com/aws/aws-sdk-php/issues/1955)", "rfc6455#section-7.1.5",
		"// The seed fixes the counts", "a design that issues tokens",
	}
	match := func(s string) bool {
		if !mayCite([]byte(s)) {
			return false
		}
		for _, c := range citations {
			if c.re.MatchString(s) {
				return true
			}
		}
		return false
	}
	for _, s := range cites {
		if !match(s) {
			t.Errorf("%q is not recognised as a citation", s)
		}
	}
	for _, s := range fine {
		if match(s) {
			t.Errorf("%q is taken for a citation", s)
		}
	}
}

// TestLayoutNamesEveryTopLevelDirectory: the README's layout is how a
// newcomer finds their way; a new top-level directory must appear in it.
func TestLayoutNamesEveryTopLevelDirectory(t *testing.T) {
	t.Parallel()
	readme := read(t, "README.md")
	_, layout, ok := strings.Cut(readme, "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	named := map[string]bool{}
	for line := range strings.Lines(layout) {
		if f := strings.Fields(line); len(f) > 0 {
			named[strings.SplitN(f[0], "/", 2)[0]] = true
		}
	}
	for _, f := range trackedFiles(t) {
		if dir, _, ok := strings.Cut(f, "/"); ok && !named[dir] {
			t.Errorf("the README's layout does not name %s/ (holding %s)", dir, f)
			named[dir] = true
		}
	}
}
