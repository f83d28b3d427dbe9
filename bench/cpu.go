package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// cpuRounds is how many rounds the comparison at compareSize alternates its
// publishers in, so that what else the machine does weighs on each alike:
// the comparisons are ratios within one run.
const cpuRounds = 3

func cpuTopic(size int) string { return fmt.Sprint("cpu-", size) }

// sample is what the messages of one publisher to one topic came to.
type sample struct {
	messages, deliveries, lost int
	elapsed                    time.Duration
	cpu                        cpuUse
	latencies, rpcs            []time.Duration
}

// runCPU is the CPU cost of a delivery, where nothing but the CPU limits
// the fan-out: no latency, no quota. Messages go one after another over
// gRPC, each answered when its fan-out ends. At compareSize the reference
// publishers (references.go) post the same topic on the same stack.
func runCPU(ctx context.Context, cfg options) ([]row, error) {
	stack, addrs, err := startStack(stackConfig{References: true})
	if err != nil {
		return nil, err
	}
	defer stack.stop()
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", slices.Max(cfg.cpuSizes), nestedTopics(cfg.cpuSizes, cpuTopic))
	if err != nil {
		return nil, err
	}
	defer subs.close()
	progress("cpu: %d subscribers connected; the stack's pprof: http://%s/debug/pprof/", slices.Max(cfg.cpuSizes), addrs.Control)
	names := []string{"ours", "plain net/http", "naive SDK"}
	var pcs []*publisherClient
	for _, a := range []string{addrs.GRPC, addrs.PlainGRPC, addrs.NaiveGRPC} {
		pc, err := newPublisherClient(a, "")
		if err != nil {
			return nil, err
		}
		defer pc.close()
		pcs = append(pcs, pc)
	}

	var rows, refs []row // the references' rows come last
	for _, size := range cfg.cpuSizes {
		n, rounds := 1, 1
		if size == cfg.compareSize {
			n, rounds = len(pcs), cpuRounds
		}
		samples := make([]sample, n)
		for range rounds {
			for i := range samples {
				if err := measureCPU(ctx, subs, stack.pid(), pcs[i], size, max(1, cfg.messages(size)/rounds), &samples[i]); err != nil {
					return rows, fmt.Errorf("%s, S=%d: %w", names[i], size, err)
				}
			}
		}
		r := samples[0].row(names[0], size)
		if n > 1 {
			r.target = "≥ 25 000/s, p99 ≤ 50 ms"
		}
		rows = append(rows, r)
		for i := 1; i < n; i++ {
			r := samples[i].row(names[i], size)
			r.compare = fmt.Sprintf("ours at %.2f× of its rate; %s", samples[0].rate()/samples[i].rate(), r.compare)
			refs = append(refs, r)
		}
	}
	return append(rows, refs...), nil
}

// measureCPU publishes messages to the size-subscriber topic one after
// another, after one to warm up, and adds what they came to to s.
func measureCPU(ctx context.Context, subs *subscribers, stackPID int, pc *publisherClient, size, messages int, s *sample) error {
	return measureTopic(ctx, subs, stackPID, pc, cpuTopic(size), size, messages, s)
}

// measureTopic is measureCPU for a topic named otherwise (the patterns
// scenario's, which patterns must match).
func measureTopic(ctx context.Context, subs *subscribers, stackPID int, pc *publisherClient, topic string, size, messages int, s *sample) error {
	want := subs.received.Load() + int64(size)
	if _, err := pc.publish(ctx, topic); err != nil {
		return err
	}
	if err := subs.waitReceived(ctx, want); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	subs.takeLatencies(size)

	cpu0, err := readCPU(stackPID)
	if err != nil {
		return err
	}
	start := time.Now()
	want = subs.received.Load()
	for range messages {
		res, err := pc.publish(ctx, topic)
		if err != nil {
			return err
		}
		s.lost += size - res.delivered
		s.deliveries += res.delivered
		want += int64(res.delivered)
		s.rpcs = append(s.rpcs, res.rpc)
	}
	if err := subs.waitReceived(ctx, want); err != nil {
		return err
	}
	s.elapsed += time.Since(start)
	cpu1, err := readCPU(stackPID)
	s.messages += messages
	s.cpu.stack += cpu1.stack - cpu0.stack
	s.cpu.self += cpu1.self - cpu0.self
	s.latencies = append(s.latencies, subs.takeLatencies(size)...)
	return err
}

func (s sample) rate() float64 { return float64(s.deliveries) / s.elapsed.Seconds() }

// row shows the sample: deliveries/s over the whole row; publish→receive
// of every delivery; the Publish call's median; and the CPU time per
// delivery of the stack's process and of the subscribers', which unlike
// the rate hardly depends on what else the machine runs.
func (s sample) row(name string, size int) row {
	n := time.Duration(max(1, s.deliveries))
	return row{"cpu", fmt.Sprintf("%s, S=%d, M=%d", name, size, s.messages), fmt.Sprintf("%.0f deliveries/s", s.rate()),
		fmt.Sprintf("p50/p99/max %v/%v/%v; RPC p50 %v; CPU %s + %s; %d lost",
			quantile(s.latencies, .5), quantile(s.latencies, .99), quantile(s.latencies, 1), quantile(s.rpcs, .5),
			micros(s.cpu.stack/n), micros(s.cpu.self/n), s.lost), ""}
}
