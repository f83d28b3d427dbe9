package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/bench"
)

// TestMain lets the test binary serve the stacks the harness starts, as
// the bench binary does.
func TestMain(m *testing.M) {
	if bench.IsChild() {
		if err := bench.ServeChild(context.Background()); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunSmall runs every scenario of the harness, tiny, against the real
// stack: it checks that the harness works and that its figures hang
// together, not how fast anything is (that is `make bench`'s job).
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the stack, dynalite and the publisher: not in -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := bench.Config{
		Latency:           5 * time.Millisecond,
		QuotaRate:         2000,
		QuotaBurst:        20,
		AWSSizes:          []int{40},
		CPUSizes:          []int{10, 30},
		Deliveries:        150,
		CompareSize:       30,
		SDKDuration:       200 * time.Millisecond,
		LookupConnections: 300,
		LookupTopics:      6,
		IdleConnections:   50,
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	res, err := bench.Run(ctx, cfg, exe)
	if err != nil {
		t.Fatal(err)
	}

	if len(res.AWS) != 1 {
		t.Fatalf("scenario 1: %d results, want 1", len(res.AWS))
	}
	if a := res.AWS[0]; a.Failed != 0 || a.Median <= 0 || a.Baseline <= 0 || a.Throttled+a.Calls == 0 {
		t.Errorf("scenario 1-2: %+v, want every delivery made and timed, and the seed's baseline", a)
	}
	cases := map[string]bool{}
	for _, c := range res.CPU {
		cases[c.Case] = true
		// /proc counts a process's CPU in 10 ms ticks, which a tiny row
		// may not reach in one of the two processes.
		if c.Failed != 0 || c.DeliveriesPerSec <= 0 || c.Latency.N != c.Subscribers*c.Messages || c.Latency.P50 > c.Latency.Max || c.CPU.Stack+c.CPU.Subscribers <= 0 {
			t.Errorf("scenario 3, %s S=%d: %+v, want every delivery made, timed, and its CPU counted", c.Case, c.Subscribers, c)
		}
	}
	for _, want := range []string{"gRPC", "REST", "baseline", "plain net/http", "naive SDK"} {
		if !cases[want] {
			t.Errorf("scenario 3 has no %s row", want)
		}
	}
	if s := res.SDK; s == nil || s.SDK <= 0 || s.Plain <= 0 || s.DefaultSDK <= 0 {
		t.Errorf("scenario 4: %+v, want three rates", s)
	}
	perTopic := float64(cfg.LookupConnections / cfg.LookupTopics)
	if l := res.Lookup; l == nil || l.Ours.ItemsRead != perTopic || l.Seed.ItemsRead != float64(cfg.LookupConnections) || l.Ours.Capacity <= 0 {
		t.Errorf("scenario 5: %+v, want %v items read per publish by the Query, all %d by the Scan", l, perTopic, cfg.LookupConnections)
	}
	if m := res.Memory; m == nil || m.PerConnection <= 0 || m.PublisherPeak < m.PublisherIdle || m.Delivered != cfg.IdleConnections {
		t.Errorf("scenario 6: %+v, want a size per connection and a publisher that reached all %d", m, cfg.IdleConnections)
	}

	dir := t.TempDir()
	var table strings.Builder
	if err := bench.Write(&table, dir, res); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"1  AWS model, S=40", "2  baseline, S=40", "3  gRPC, S=30", "4  SDK vs net/http", "5  lookup", "6  emulator RSS"} {
		if !strings.Contains(table.String(), row) {
			t.Errorf("the table has no row %q:\n%s", row, table.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Results
	if err := json.Unmarshal(b, &back); err != nil || len(back.CPU) != len(res.CPU) {
		t.Errorf("results.json does not hold the results: %v", err)
	}
	if png, err := os.ReadFile(filepath.Join(dir, "results.png")); err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Errorf("results.png is not a PNG: %v", err)
	}
}

func TestParseScenarios(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"1, 3,6", []int{1, 3, 6}, false},
		{"0", nil, true},
		{"7", nil, true},
		{"two", nil, true},
	} {
		got, err := bench.ParseScenarios(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseScenarios(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
