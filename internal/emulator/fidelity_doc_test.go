package emulator_test

import (
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
	defined := testFuncs(t)

	rows := 0
	var header []string
	for i, line := range strings.Split(string(doc), "\n") {
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
		rows++
		where := fidelityDoc + ":" + strconv.Itoa(i+1)
		if len(cells) != len(header) {
			t.Errorf("%s: %d cells, want %d like the header", where, len(cells), len(header))
			continue
		}
		for col, name := range header {
			if name == "AWS" && !strings.Contains(cells[col], "](https://") && !strings.HasPrefix(cells[col], "—") {
				t.Errorf("%s: the AWS column links to no source: %s", where, cells[col])
			}
		}
		cited := citation.FindAllStringSubmatch(line, -1)
		if len(cited) == 0 {
			t.Errorf("%s: row cites no test: %s", where, cells[0])
		}
		for _, c := range cited {
			if file, ok := defined[c[1]]; !ok {
				t.Errorf("%s: %s does not exist in internal/emulator", where, c[1])
			} else if file != c[2] {
				t.Errorf("%s: %s is in %s, not %s", where, c[1], file, c[2])
			}
		}
	}
	if rows < 30 {
		t.Errorf("found %d table rows in %s; has its format changed?", rows, fidelityDoc)
	}
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
