package bench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

// AWSResult is scenario 1 for one topic size: how long a publish takes
// until its last subscriber has the message, against the floor the quota
// sets, S / quota; and scenario 2, the seed's algorithm on the same stack.
type AWSResult struct {
	Subscribers int `json:"subscribers"`
	// Runs are the times of each publish, the first on a fresh publisher
	// (nothing learned yet), the others after.
	Runs   []Millis `json:"runs_ms"`
	Median Millis   `json:"median_ms"`
	Floor  Millis   `json:"floor_ms"`
	Ratio  float64  `json:"ratio"` // median / floor
	// Failed counts deliveries lost over all runs (to 429s or anything
	// else); Throttled, the 429s the publisher got; Calls, its calls.
	Failed    int     `json:"failed"`
	Throttled float64 `json:"throttled"`
	Calls     float64 `json:"calls"`
	// Cores is how many of the machine's cores the stack and the
	// subscribers kept busy during the median run: near all of them, the
	// CPU, not the quota, set the time.
	Cores float64 `json:"cores_busy"`
	// Baseline is the seed's algorithm: measured, or projected from the
	// measured per-post time when it would take minutes.
	Baseline          Millis  `json:"baseline_ms"`
	BaselineProjected bool    `json:"baseline_projected"`
	Speedup           float64 `json:"speedup"` // baseline / median
}

func awsTopic(size int) string { return fmt.Sprint("aws-", size) }

// awsRuns is how many publishes each size gets.
const awsRuns = 3

// runAWS is scenarios 1 and 2: the emulator adds cfg.Latency to every
// management call and throttles them to the quota.
func runAWS(ctx context.Context, cfg Config) ([]AWSResult, error) {
	quota := emulator.Quota{Rate: cfg.QuotaRate, Burst: cfg.QuotaBurst}
	p, addrs, err := startStackProc(cfg.exe, StackConfig{Latency: cfg.Latency, Quota: quota, Publisher: true, PProf: cfg.Profiles != ""})
	if err != nil {
		return nil, err
	}
	defer p.stop()
	pc, err := newPublisherClient(addrs)
	if err != nil {
		return nil, err
	}
	defer pc.close()
	sizes := slices.Clone(cfg.AWSSizes)
	slices.SortFunc(sizes, func(a, b int) int { return b - a }) // the largest first, on a fresh publisher
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", sizes[0], nestedTopics(sizes, awsTopic))
	if err != nil {
		return nil, err
	}
	defer subs.close()
	cfg.progress("aws: %d subscribers connected", sizes[0])

	// A token bucket refills in Burst / Rate: each publish starts on a
	// full one, as after a quiet spell.
	refill := time.Duration(float64(cfg.QuotaBurst)/cfg.QuotaRate*float64(time.Second)) + 100*time.Millisecond
	const (
		throttledSeries = `wsgateway_management_call_duration_seconds_count{outcome="throttled"}`
		okSeries        = `wsgateway_management_call_duration_seconds_count{outcome="ok"}`
	)
	prof := profiler{addr: addrs.PProf, dir: cfg.Profiles}
	var results []AWSResult
	for _, size := range sizes {
		r := AWSResult{Subscribers: size, Floor: Millis(time.Duration(float64(size) / cfg.QuotaRate * float64(time.Second)))}
		before, err := pc.counters(ctx, throttledSeries, okSeries)
		if err != nil {
			return results, err
		}
		type run struct {
			last  time.Duration // until the last subscriber had it
			cores float64       // busy meanwhile
		}
		var runs []run
		for range awsRuns {
			if err := waitCtx(ctx, refill); err != nil {
				return results, err
			}
			want := subs.received.Load()
			cpu0, err := readCPU(p.cmd.Process.Pid)
			if err != nil {
				return results, err
			}
			prof.start()
			res, err := pc.publishGRPC(ctx, awsTopic(size))
			if err != nil {
				return results, err
			}
			r.Failed += size - res.delivered
			want += int64(res.delivered) // the failed ones never arrive
			if !subs.waitReceived(ctx, want, time.Minute) {
				return results, fmt.Errorf("%d subscribers: %d of %d received the message (publish answered %+v; %d connections ended)", size, size-int(want-subs.received.Load()), size, res, subs.ended.Load())
			}
			if err := prof.stop(fmt.Sprintf("stack-aws-%d-run%d", size, len(runs)+1)); err != nil {
				return results, err
			}
			lat := subs.takeLatencies(size)
			last := slices.Max(lat)
			cpu1, err := readCPU(p.cmd.Process.Pid)
			if err != nil {
				return results, err
			}
			used := cpu1.since(cpu0)
			cores := (used.stack + used.self).Seconds() / last.Seconds()
			runs = append(runs, run{last, cores})
			r.Runs = append(r.Runs, Millis(last))
			cfg.progress("aws S=%-5d %v until the last subscriber (floor %v), %.2f cores busy; publish answered %+v", size, fmtDuration(last), r.Floor, cores, res)
		}
		after, err := pc.counters(ctx, throttledSeries, okSeries)
		if err != nil {
			return results, err
		}
		r.Throttled = after[throttledSeries] - before[throttledSeries]
		r.Calls = r.Throttled + after[okSeries] - before[okSeries]
		if r.Failed > 0 {
			cfg.progress("aws S=%d: %d deliveries failed; the publisher said:\n%s", size, r.Failed, p.stderr())
		}
		slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.last, b.last) })
		mid := runs[(len(runs)-1)/2]
		r.Median, r.Cores = Millis(mid.last), mid.cores
		r.Ratio = float64(r.Median) / float64(r.Floor)
		results = append(results, r)
	}

	// Scenario 2 on the same stack: the seed posts one after another, so
	// its time is S times one call; past a minute, it is projected from
	// the smallest size's measure rather than waited for.
	s := newSeed(cfg.aws, "http://"+addrs.WS, pc.grpc)
	var perPost time.Duration
	for i := len(results) - 1; i >= 0; i-- { // the smallest first
		r := &results[i]
		if perPost > 0 && time.Duration(r.Subscribers)*perPost > time.Minute {
			r.Baseline, r.BaselineProjected = Millis(time.Duration(r.Subscribers)*perPost), true
		} else {
			if err := waitCtx(ctx, refill); err != nil {
				return results, err
			}
			want := subs.received.Load() + int64(r.Subscribers)
			if _, err := s.publish(ctx, awsTopic(r.Subscribers)); err != nil {
				return results, err
			}
			if !subs.waitReceived(ctx, want, time.Minute) {
				return results, fmt.Errorf("baseline, %d subscribers: not every subscriber received the message", r.Subscribers)
			}
			last := slices.Max(subs.takeLatencies(r.Subscribers))
			r.Baseline = Millis(last)
			perPost = last / time.Duration(r.Subscribers)
		}
		r.Speedup = float64(r.Baseline) / float64(r.Median)
		cfg.progress("aws baseline S=%-5d %v (projected: %v)", r.Subscribers, r.Baseline, r.BaselineProjected)
	}
	return results, nil
}
