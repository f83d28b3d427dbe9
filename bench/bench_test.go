package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve the stacks the scenarios start, as
// the bench's binary does.
func TestMain(m *testing.M) {
	if spec := os.Getenv(stackEnv); spec != "" {
		if err := serveChild(context.Background(), spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err := chdirRoot(); err != nil { // as the bench does, for dynalite
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestScenarios runs every scenario, tiny, with its stacks in child
// processes and dynalite: that each runs to its row and loses nothing.
func TestScenarios(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts stacks and dynalite")
	}
	cfg := options{
		latency: 5 * time.Millisecond, quotaRate: 2000, quotaBurst: 20, awsSizes: []int{40, 10},
		cpuSizes: []int{10, 30}, deliveries: 150, compareSize: 30,
		lookupConns: 300, lookupTopics: 6, idleConns: 50,
	}
	for _, tt := range []struct {
		scenario string
		run      func(context.Context, options) ([]row, error)
		rows     int
		want     string // in every row
		first    string // in the first row
	}{
		{"aws", runAWS, 2, " 0 lost", ""},
		{"cpu", runCPU, 4, " 0 lost", ""},
		{"history", runHistory, 4, " 0 lost", ""},
		// 50 subscriptions per topic; every publish writes a position and
		// keeps its message, and the recovering subscribe reads history.
		{"lookup", runLookup, 4, "", "50 items"},
		{"memory", runMemory, 1, "KiB per connection", ""},
	} {
		// Side by side: the test checks rows and losses, not rates.
		t.Run(tt.scenario, func(t *testing.T) {
			t.Parallel()
			rows, err := tt.run(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tt.rows {
				t.Errorf("%d rows, want %d: %q", len(rows), tt.rows, rows)
			}
			for i, r := range rows {
				t.Logf("%q", r)
				if want := map[bool]string{true: tt.first, false: tt.want}[i == 0 && tt.first != ""]; !strings.Contains(fmt.Sprint(r), want) {
					t.Errorf("row %q, want %q in it", r, want)
				}
			}
			if tt.scenario == "lookup" {
				for _, want := range []string{"NextPosition", "Retain", "Query", "GetItem"} {
					if !strings.Contains(fmt.Sprint(rows), want) {
						t.Errorf("rows %q name no %s", rows, want)
					}
				}
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{.5, 50 * time.Millisecond}, {.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {.001, time.Millisecond}} {
		if got := quantile(d, tt.q); got != tt.want {
			t.Errorf("quantile(1…100 ms, %v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := quantile(nil, .5); got != 0 {
		t.Errorf("quantile(nil) = %v, want 0", got)
	}
}
