package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestPatternsScenario runs the patterns comparison tiny: its four stacks
// reach every subscriber once per publish, with pattern subscribers
// present or not (a lost or a doubled delivery would show as lost, or as
// a wait for messages that never come), and its rows compare the two.
func TestPatternsScenario(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts stacks and dynalite")
	}
	cfg := options{deliveries: 150, compareSize: 30}
	rows, err := runPatterns(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4: %q", len(rows), rows)
	}
	for i, r := range rows {
		t.Logf("%q", r)
		if s := fmt.Sprint(r); !strings.Contains(s, " 0 lost") || r.scenario != "patterns" {
			t.Errorf("row %q, want a patterns row with 0 lost", r)
		}
		if with := i%2 == 1; with != strings.Contains(r.compare, "the rate without pattern subscribers") {
			t.Errorf("row %q: the rows with pattern subscribers, and only they, compare", r)
		}
	}
	if !strings.Contains(rows[1].name, "3 of them also on bench.* and 3 on *") {
		t.Errorf("row %q, want a tenth of S=30 on each pattern", rows[1])
	}
}
