package emulator_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const fidelityDoc = "../../docs/apigateway-fidelity.md"

// citation is how the fidelity doc names a test: `TestName` (file_test.go).
var citation = regexp.MustCompile("`(Test\\w+)` \\((\\w+_test\\.go)\\)")

// TestFidelityDocCitesRealTests keeps docs/apigateway-fidelity.md honest:
// every row of its tables cites at least one test, every cited test exists
// in the file it names, and every AWS column links to its source.
func TestFidelityDocCitesRealTests(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(fidelityDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fidelityProblems(string(doc), testFuncs(t)) {
		t.Error(p)
	}
}

// TestFidelityDocCheckCatchesBreakage breaks copies of the doc and wants
// each caught; that the doc's own rows are found is part of it, for a
// citation can only be caught where a row is read.
func TestFidelityDocCheckCatchesBreakage(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(fidelityDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc, defined := string(b), testFuncs(t)
	first := citation.FindStringSubmatch(doc)
	if first == nil {
		t.Fatal("the doc cites no test")
	}
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if strings.Contains(l, first[0]) {
			lines[i] = citation.ReplaceAllString(l, "")
			break
		}
	}
	for name, broken := range map[string]string{
		"a test that does not exist": strings.Replace(doc, "`"+first[1]+"`", "`TestNoSuchTest`", 1),
		"the wrong file":             strings.Replace(doc, first[0], "`"+first[1]+"` (no_such_test.go)", 1),
		"a row citing nothing":       strings.Join(lines, "\n"),
	} {
		if broken == doc {
			t.Fatalf("%s: nothing to break", name)
		}
		if len(fidelityProblems(broken, defined)) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}

// fidelityProblems checks the doc's tables against the package's tests.
func fidelityProblems(doc string, defined map[string]string) (problems []string) {
	var header []string
	for i, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "|") {
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		switch {
		case header == nil:
			header = cells
			continue
		case strings.Trim(line, "|-: ") == "":
			continue // the separator row
		}
		where := fidelityDoc + ":" + strconv.Itoa(i+1)
		if len(cells) != len(header) {
			problems = append(problems, fmt.Sprintf("%s: %d cells, want %d like the header", where, len(cells), len(header)))
			continue
		}
		for col, name := range header {
			if name == "AWS" && !strings.Contains(cells[col], "](https://") && !strings.HasPrefix(cells[col], "—") {
				problems = append(problems, fmt.Sprintf("%s: the AWS column links to no source: %s", where, cells[col]))
			}
		}
		cited := citation.FindAllStringSubmatch(line, -1)
		if len(cited) == 0 {
			problems = append(problems, fmt.Sprintf("%s: row cites no test: %s", where, cells[0]))
		}
		for _, c := range cited {
			if file, ok := defined[c[1]]; !ok {
				problems = append(problems, fmt.Sprintf("%s: %s does not exist in internal/emulator", where, c[1]))
			} else if file != c[2] {
				problems = append(problems, fmt.Sprintf("%s: %s is in %s, not %s", where, c[1], file, c[2]))
			}
		}
	}
	return problems
}

// testFuncs maps the package's top-level Test functions to their files.
func testFuncs(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				funcs[fn.Name.Name] = name
			}
		}
	}
	return funcs
}
