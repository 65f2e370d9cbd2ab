package errs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// TestAllListsEveryError parses errs.go and checks that All returns each exported Err*
// variable exactly once, so a new error cannot be left out of api's completeness check.
func TestAllListsEveryError(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errs.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
					names = append(names, n.Name)
				}
			}
		}
	}
	all := All()
	if len(names) == 0 || len(all) != len(names) {
		t.Fatalf("errs.go declares %d errors %v; All returns %d", len(names), names, len(all))
	}
	seen := make(map[error]bool)
	texts := make(map[string]bool)
	for _, e := range all {
		if seen[e] {
			t.Errorf("All lists %q twice", e)
		}
		seen[e] = true
		if texts[e.Error()] {
			t.Errorf("two errors share the text %q", e)
		}
		texts[e.Error()] = true
	}
}

func TestFromMessage(t *testing.T) {
	for _, e := range All() {
		if got := FromMessage(e.Error()); got != e {
			t.Errorf("FromMessage(%q) = %v (a new value); want the sentinel", e.Error(), got)
		}
	}
	if got := FromMessage("boom"); got.Error() != "boom" {
		t.Errorf("FromMessage(boom) = %q", got)
	}
}
