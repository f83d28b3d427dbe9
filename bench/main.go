// Command bench measures what a publish costs on the real local stack:
// `make bench` (docs/performance.md).
//
// It is a Go module of its own, so that what it alone needs stays out of the
// product's go.mod. Servers run in child processes (this binary again, in its
// stack role, and dynalite) and the WebSocket subscribers in this one, so that
// each process has its own file descriptors, CPU time and RSS to measure; all
// of them share the machine's cores. Every figure of a table comes from one
// run: compare ratios across runs and machines, not absolute numbers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// scenarios are the scenarios in the order they run, by the name -only takes.
var scenarios = []string{"aws", "cpu", "history", "patterns", "lookup", "memory"}

// options say what to run; defaultOptions is `make bench`.
type options struct {
	// aws: the latency the emulator adds to every management call, the
	// account's quota (a token bucket) and the topic sizes.
	latency    time.Duration
	quotaRate  float64
	quotaBurst int
	awsSizes   []int
	// cpu: topic sizes, deliveries each row aims at (messages = deliveries
	// / size), and the size the reference publishers are compared at;
	// history compares its HISTORY_TTLs at that size too, and patterns
	// its stacks with and without pattern subscribers.
	cpuSizes    []int
	deliveries  int
	compareSize int
	// lookup: connections spread over topics, in DynamoDB.
	lookupConns, lookupTopics int
	// memory: idle connections to measure.
	idleConns int
	only      []string
}

func defaultOptions() options {
	return options{
		latency: 15 * time.Millisecond, quotaRate: 10000, quotaBurst: 1000, awsSizes: []int{10000, 1000},
		cpuSizes: []int{100, 1000, 5000}, deliveries: 60000, compareSize: 1000,
		lookupConns: 20000, lookupTopics: 200,
		idleConns: 10000,
	}
}

func (c options) runs(scenario string) bool {
	return len(c.only) == 0 || slices.Contains(c.only, scenario)
}

func (c options) messages(size int) int { return max(5, c.deliveries/size) }

func progress(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if spec := os.Getenv(stackEnv); spec != "" {
		if err := serveChild(ctx, spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench stack:", err)
			os.Exit(1)
		}
		return
	}

	cfg := defaultOptions()
	flag.DurationVar(&cfg.latency, "latency", cfg.latency, "aws: latency added to each management call")
	flag.Float64Var(&cfg.quotaRate, "quota", cfg.quotaRate, "aws: the account's quota, management calls per second")
	flag.IntVar(&cfg.quotaBurst, "burst", cfg.quotaBurst, "aws: the quota's bucket size")
	flag.IntVar(&cfg.deliveries, "deliveries", cfg.deliveries, "cpu: deliveries per row")
	only := flag.String("only", "", "comma-separated scenarios to run, of "+strings.Join(scenarios, ", ")+"; all when empty")
	out := flag.String("out", "bench-results", "`dir` for results.txt, the table")
	flag.Usage = usage
	flag.Parse()
	for s := range strings.SplitSeq(*only, ",") {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(scenarios, s) {
			fmt.Fprintf(os.Stderr, "bench: -only %s: no such scenario\n", s)
			os.Exit(2)
		} else if s != "" {
			cfg.only = append(cfg.only, s)
		}
	}
	if err := run(ctx, cfg, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintf(flag.CommandLine.Output(), `Usage: bench [flags]

Runs the fan-out benchmark on this machine (Linux: it reads /proc) and prints
its table; see docs/performance.md. Scenarios: %s.

Environment:
  PATH                   must hold node: dynalite (npm ci at the repository's
                         root) is the DynamoDB of the lookup and memory scenarios
  %s  set by the bench on its own child processes, which then
                         serve a stack instead of benchmarking; not for users

Flags:
`, strings.Join(scenarios, ", "), stackEnv)
	flag.PrintDefaults()
}

// run runs the scenarios and writes the table to stdout and out/results.txt.
func run(ctx context.Context, cfg options, out string) error {
	var err error
	// -out is the caller's path, from before the move to the repository's
	// root, where dynalite's launcher finds node_modules.
	if out, err = filepath.Abs(out); err != nil {
		return err
	}
	if err := chdirRoot(); err != nil {
		return err
	}
	r := newReport()
	scenarioFuncs := map[string]func(context.Context, options) ([]row, error){
		"aws": runAWS, "cpu": runCPU, "history": runHistory, "patterns": runPatterns, "lookup": runLookup, "memory": runMemory,
	}
	for _, s := range scenarios {
		if !cfg.runs(s) {
			continue
		}
		rows, err := scenarioFuncs[s](ctx, cfg)
		r.rows = append(r.rows, rows...)
		if err != nil {
			err = fmt.Errorf("%s: %w", s, err)
			return errors.Join(err, r.write(out))
		}
	}
	return r.write(out)
}

// chdirRoot moves to the repository's root: the directory above holding
// both go.mod and package.json (node_modules, where dynalite is, lives
// beside them), so that the bench runs from bench/ as from the root.
func chdirRoot() error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	for d := dir; ; d = filepath.Dir(d) {
		_, errMod := os.Stat(filepath.Join(d, "go.mod"))
		_, errPkg := os.Stat(filepath.Join(d, "package.json"))
		if errMod == nil && errPkg == nil {
			return os.Chdir(d)
		}
		if filepath.Dir(d) == d {
			return fmt.Errorf("no repository root (go.mod beside package.json) at or above %s", dir)
		}
	}
}
