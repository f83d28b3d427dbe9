package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	smithytime "github.com/aws/smithy-go/time"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

// awsRuns is how many publishes each topic size gets; the table shows the
// median.
const awsRuns = 3

func awsTopic(size int) string { return fmt.Sprint("aws-", size) }

// runAWS is the AWS model: the emulator adds cfg.latency to every
// management call and throttles them to the account's quota, a token
// bucket. One publish to S subscribers takes at least S / quota, the floor;
// the time measured is until the last subscriber has the message, from the
// time in its payload.
func runAWS(ctx context.Context, cfg options) ([]row, error) {
	stack, addrs, err := startStack(stackConfig{Latency: cfg.latency, Quota: emulator.Quota{Rate: cfg.quotaRate, Burst: cfg.quotaBurst}})
	if err != nil {
		return nil, err
	}
	defer stack.stop()
	pc, err := newPublisherClient(addrs.GRPC, addrs.HTTP)
	if err != nil {
		return nil, err
	}
	defer pc.close()
	// The largest first, on a fresh publisher: its flow knows nothing yet,
	// so the first run is the cold one.
	sizes := slices.Sorted(slices.Values(cfg.awsSizes))
	slices.Reverse(sizes)
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", sizes[0], nestedTopics(sizes, awsTopic))
	if err != nil {
		return nil, err
	}
	defer subs.close()
	progress("aws: %d subscribers connected; the stack's pprof: http://%s/debug/pprof/", sizes[0], addrs.Control)

	// The bucket refills in burst / rate: each publish starts on a full
	// one, as after a quiet spell.
	refill := time.Duration(float64(cfg.quotaBurst)/cfg.quotaRate*float64(time.Second)) + 100*time.Millisecond
	var rows []row
	for _, size := range sizes {
		floor := time.Duration(float64(size) / cfg.quotaRate * float64(time.Second))
		before, err := pc.managementCalls(ctx)
		if err != nil {
			return rows, err
		}
		type run struct {
			last  time.Duration // until the last subscriber had it
			cores float64       // kept busy meanwhile, by the stack and the subscribers
		}
		var runs []run
		lost := 0
		for range awsRuns {
			if err := smithytime.SleepWithContext(ctx, refill); err != nil {
				return rows, err
			}
			want := subs.received.Load()
			cpu0, err := readCPU(stack.pid())
			if err != nil {
				return rows, err
			}
			res, err := pc.publish(ctx, awsTopic(size))
			if err != nil {
				return rows, err
			}
			lost += size - res.delivered
			if err := subs.waitReceived(ctx, want+int64(res.delivered)); err != nil { // the lost never arrive
				return rows, fmt.Errorf("S=%d: %w", size, err)
			}
			cpu1, err := readCPU(stack.pid())
			if err != nil {
				return rows, err
			}
			last := slices.Max(subs.takeLatencies(size))
			used := cpu1.since(cpu0)
			runs = append(runs, run{last, (used.stack + used.self).Seconds() / last.Seconds()})
			progress("aws S=%-5d %v until the last subscriber (floor %v); %d of %d delivered", size, last.Round(10*time.Microsecond), floor, res.delivered, size)
		}
		after, err := pc.managementCalls(ctx)
		if err != nil {
			return rows, err
		}
		calls, throttled := 0.0, after["throttled"]-before["throttled"]
		for outcome, n := range after {
			calls += n - before[outcome]
		}
		slices.SortFunc(runs, func(a, b run) int { return int(a.last - b.last) })
		mid := runs[(len(runs)-1)/2]
		rows = append(rows, row{"aws", fmt.Sprintf("S=%d, %v a call", size, cfg.latency),
			fmt.Sprintf("%v to the last subscriber", mid.last.Round(10*time.Microsecond)),
			fmt.Sprintf("floor %v: %.2f×; %d lost; %.1f%% of calls 429; %.1f cores busy", floor, float64(mid.last)/float64(floor), lost, 100*throttled/max(1, calls), mid.cores),
			"≤ 1.15× floor, 0 lost"})
	}
	return rows, nil
}
