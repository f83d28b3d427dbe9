// Command bench measures wsgateway's fan-out on this machine: `make bench`
// (see docs/performance.md). It also runs, as its own child processes, the
// stacks it measures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/wsgateway/wsgateway/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if bench.IsChild() {
		if err := bench.ServeChild(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "bench stack:", err)
			os.Exit(1)
		}
		return
	}

	def := bench.DefaultConfig()
	cfg := def
	flag.DurationVar(&cfg.Latency, "latency", def.Latency, "scenario 1: latency added to each management call")
	flag.Float64Var(&cfg.QuotaRate, "quota", def.QuotaRate, "scenario 1: the account quota, management calls per second")
	flag.IntVar(&cfg.QuotaBurst, "burst", def.QuotaBurst, "scenario 1: the quota's bucket size")
	flag.IntVar(&cfg.Deliveries, "deliveries", def.Deliveries, "scenario 3: deliveries per row")
	flag.DurationVar(&cfg.SDKDuration, "sdk-duration", def.SDKDuration, "scenario 4: how long each client posts")
	flag.StringVar(&cfg.Profiles, "profiles", "", "save CPU profiles of the stacks, covering what each scenario measures, in this directory")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the benchmark process (the subscribers) to this file")
	only := flag.String("only", "", "comma-separated scenarios to run (1-6); all when empty")
	out := flag.String("out", "bench-results", "directory for results.txt, results.json and results.png")
	flag.Parse()
	var err error
	if cfg.Only, err = bench.ParseScenarios(*only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	cfg.Progress = os.Stderr
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(ctx, cfg, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// run runs the benchmark, whose stacks are this binary started again.
func run(ctx context.Context, cfg bench.Config, out string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := bench.Run(ctx, cfg, exe)
	if res != nil {
		if werr := bench.Write(os.Stdout, out, res); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
