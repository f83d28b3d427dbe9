package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// cpuRounds is how many rounds the comparison at cfg.compareSize alternates
// its publishers in, so that what else the machine does weighs on each
// alike: the comparisons are ratios within one run.
const cpuRounds = 3

func cpuTopic(size int) string { return fmt.Sprint("cpu-", size) }

// publisherSeries is one publisher publishing to one topic size.
type publisherSeries struct {
	name string
	size int
	pc   *publisherClient
}

// sample is what some messages of a series came to.
type sample struct {
	messages, deliveries, lost int
	elapsed                    time.Duration
	cpu                        cpuUse
	latencies, rpcs            []time.Duration
}

// runCPU is the CPU cost of a delivery, where nothing but the CPU limits
// the fan-out: no latency, no quota. Messages go one after another over
// gRPC, each answered when its fan-out ends; at cfg.compareSize the
// reference publishers post the same topic on the same stack.
func runCPU(ctx context.Context, cfg options) ([]row, error) {
	stack, addrs, err := startStack(stackConfig{Publisher: true, References: true})
	if err != nil {
		return nil, err
	}
	defer stack.stop()
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", slices.Max(cfg.cpuSizes), nestedTopics(cfg.cpuSizes, cpuTopic))
	if err != nil {
		return nil, err
	}
	defer subs.close()
	var pcs [3]*publisherClient
	for i, a := range []string{addrs.GRPC, addrs.PlainGRPC, addrs.NaiveGRPC} {
		if pcs[i], err = newPublisherClient(a, ""); err != nil {
			return nil, err
		}
		defer pcs[i].close()
	}
	ours, plain, naive := pcs[0], pcs[1], pcs[2]
	prof := profiler{addrs.Control, cfg.profiles}

	// measure runs the series in rounds that alternate between them.
	measure := func(rounds int, ss ...publisherSeries) ([]sample, error) {
		samples := make([]sample, len(ss))
		for round := range rounds {
			for i, s := range ss {
				if err := prof.start(); err != nil {
					return nil, err
				}
				got, err := measureCPU(ctx, subs, stack.pid(), s, max(1, cfg.messages(s.size)/rounds))
				if err != nil {
					return nil, fmt.Errorf("%s, S=%d: %w", s.name, s.size, err)
				}
				if err := prof.stop(fmt.Sprintf("stack-cpu-%s-%d-%d", strings.ReplaceAll(s.name, " ", "-"), s.size, round+1)); err != nil {
					return nil, err
				}
				samples[i].add(got)
			}
		}
		return samples, nil
	}

	// Every size by the product; at compareSize, alternating with the
	// references, whose rows come last.
	var rows, refs []row
	for _, size := range cfg.cpuSizes {
		if size != cfg.compareSize {
			got, err := measure(1, publisherSeries{"ours", size, ours})
			if err != nil {
				return rows, err
			}
			rows = append(rows, got[0].row("ours", size))
			continue
		}
		got, err := measure(cpuRounds, publisherSeries{"ours", size, ours}, publisherSeries{"plain net/http", size, plain}, publisherSeries{"naive SDK", size, naive})
		if err != nil {
			return rows, err
		}
		r := got[0].row("ours", size)
		r.target = "≥ 25 000/s, p99 ≤ 50 ms"
		rows = append(rows, r)
		for i, name := range []string{"plain net/http", "naive SDK"} {
			r := got[i+1].row(name, size)
			r.compare = fmt.Sprintf("ours at %.2f× of its rate; %s", got[0].rate()/got[i+1].rate(), r.compare)
			refs = append(refs, r)
		}
	}
	return append(rows, refs...), nil
}

// measureCPU publishes messages to the series' topic one after another,
// after one to warm up, and times every delivery.
func measureCPU(ctx context.Context, subs *subscribers, stackPID int, s publisherSeries, messages int) (sample, error) {
	topic := cpuTopic(s.size)
	want := subs.received.Load() + int64(s.size)
	if _, err := s.pc.publish(ctx, topic); err != nil {
		return sample{}, err
	}
	if err := subs.waitReceived(ctx, want); err != nil {
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	subs.takeLatencies(s.size)

	out := sample{messages: messages}
	cpu0, err := readCPU(stackPID)
	if err != nil {
		return out, err
	}
	start := time.Now()
	want = subs.received.Load()
	for range messages {
		res, err := s.pc.publish(ctx, topic)
		if err != nil {
			return out, err
		}
		out.lost += s.size - res.delivered
		out.deliveries += res.delivered
		want += int64(res.delivered)
		out.rpcs = append(out.rpcs, res.rpc)
	}
	if err := subs.waitReceived(ctx, want); err != nil {
		return out, err
	}
	out.elapsed = time.Since(start)
	cpu1, err := readCPU(stackPID)
	out.cpu = cpu1.since(cpu0)
	out.latencies = subs.takeLatencies(s.size)
	return out, err
}

func (s *sample) add(o sample) {
	s.messages += o.messages
	s.deliveries += o.deliveries
	s.lost += o.lost
	s.elapsed += o.elapsed
	s.cpu.stack += o.cpu.stack
	s.cpu.self += o.cpu.self
	s.latencies = append(s.latencies, o.latencies...)
	s.rpcs = append(s.rpcs, o.rpcs...)
}

func (s sample) rate() float64 { return float64(s.deliveries) / s.elapsed.Seconds() }

// row shows the sample: deliveries/s over the whole row; publish→receive
// of every delivery; the Publish call's median; and the CPU time per
// delivery of the stack's process and of the subscribers', which unlike
// the rate hardly depends on what else the machine runs.
func (s sample) row(name string, size int) row {
	n := time.Duration(max(1, s.deliveries))
	return row{"cpu", fmt.Sprintf("%s, S=%d, M=%d", name, size, s.messages), fmt.Sprintf("%.0f deliveries/s", s.rate()),
		fmt.Sprintf("p50/p99/max %v; RPC p50 %v; CPU %s + %s; %d lost",
			percentilesOf(s.latencies), round(percentilesOf(s.rpcs).p50), micros(s.cpu.stack/n), micros(s.cpu.self/n), s.lost), ""}
}
