package main

import (
	"context"
	"fmt"
	"slices"
)

// patternsTopic is the patterns scenario's topic: one level below "bench",
// so that a publish reads its own subscribers, those of "bench.*" and those
// of "*".
func patternsTopic(size int) string { return fmt.Sprint("bench.s", size) }

// patternSubscribers is how many connections hold each pattern: a tenth of
// the topic's (100 each at S = 1 000).
func patternSubscribers(size int) int { return max(1, size/10) }

// patternsStack is one stack of the patterns comparison.
type patternsStack struct {
	store    string
	patterns bool // whether some subscribers also hold "bench.*" and "*"
	cfg      stackConfig
}

// runPatterns is what topic patterns add to a publish: the same publishes
// at S = compareSize, no latency, no quota, to stacks that differ only in
// whether pattern subscribers are present. Without them a publish still
// makes its lookups of "bench.*" and "*", which answer empty; with them,
// a tenth of the topic's subscribers also hold "bench.*" and another tenth
// "*", so the fan-out merges three lists and takes each of those
// connections once: the deliveries per publish are S on both. On the
// in-memory store (what the merge costs in CPU) and on DynamoDB (dynalite:
// what the two more Queries add in time). The stacks take turns in
// alternating rounds, as the history comparison's do.
func runPatterns(ctx context.Context, cfg options) ([]row, error) {
	endpoint, stopDB, err := startDynalite()
	if err != nil {
		return nil, err
	}
	defer stopDB()
	size := cfg.compareSize
	stacks := []patternsStack{
		{"memory", false, stackConfig{}},
		{"memory", true, stackConfig{}},
		{"dynalite", false, stackConfig{DynamoDB: endpoint, Table: "wsgateway-patterns-none"}},
		{"dynalite", true, stackConfig{DynamoDB: endpoint, Table: "wsgateway-patterns-some"}},
	}
	topic, n := patternsTopic(size), patternSubscribers(size)
	type running struct {
		stack *child
		subs  *subscribers
		pc    *publisherClient
	}
	rs := make([]running, len(stacks))
	for i, p := range stacks {
		stack, addrs, err := startStack(p.cfg)
		if err != nil {
			return nil, err
		}
		defer stack.stop()
		subs, err := connect(ctx, "ws://"+addrs.WS+"/", size, func(i int) []string {
			switch {
			case p.patterns && i < n:
				return []string{topic, "bench.*"}
			case p.patterns && i < 2*n:
				return []string{topic, "*"}
			}
			return []string{topic}
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name(size), err)
		}
		defer subs.close()
		pc, err := newPublisherClient(addrs.GRPC, "")
		if err != nil {
			return nil, err
		}
		defer pc.close()
		rs[i] = running{stack, subs, pc}
		progress("patterns: %s: %d subscribers connected; the stack's pprof: http://%s/debug/pprof/", p.name(size), size, addrs.Control)
	}

	samples, rates, err := alternate(len(stacks), historyRounds, func(i int, s *sample) error {
		r := rs[i]
		if err := measureTopic(ctx, r.subs, r.stack.pid(), r.pc, topic, size, max(1, 2*cfg.messages(size)/historyRounds), s); err != nil {
			return fmt.Errorf("%s: %w", stacks[i].name(size), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var rows []row
	for i := 0; i < len(stacks); i += 2 {
		none, some := samples[i], samples[i+1]
		for j, s := range []sample{none, some} {
			r := s.row("", size)
			r.scenario = "patterns"
			r.name = fmt.Sprintf("%s, S=%d, M=%d", stacks[i+j].name(size), size, s.messages)
			if j == 1 {
				lo, mid, hi := ratios(rates[i], rates[i+1])
				met := "met"
				if mid < 0.95 {
					met = "not met"
				}
				n0, n1 := max(1, none.deliveries), max(1, s.deliveries)
				r.compare = fmt.Sprintf("%.3f× the rate without pattern subscribers, median of %d rounds (%.2f–%.2f; %s); stack CPU %.3f×; RPC p50 %+.2fms; %s",
					mid, len(rates[i]), lo, hi, met,
					(float64(s.cpu.stack)/float64(n1))/max(1, float64(none.cpu.stack)/float64(n0)),
					(quantile(s.rpcs, .5)-quantile(none.rpcs, .5)).Seconds()*1e3, r.compare)
				r.target = "≥ 0.95× without pattern subscribers"
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

func (p patternsStack) name(size int) string {
	if !p.patterns {
		return p.store + ", no pattern subscribers"
	}
	n := patternSubscribers(size)
	return fmt.Sprintf("%s, %d of them also on bench.* and %d on *", p.store, n, n)
}

// ratios are the lowest, median and highest of the rounds' ratios of b to
// a: each round ran both back to back, under the same load.
func ratios(a, b []float64) (lo, mid, hi float64) {
	var rs []float64
	for k := range a {
		rs = append(rs, b[k]/a[k])
	}
	slices.Sort(rs)
	return rs[0], (rs[(len(rs)-1)/2] + rs[len(rs)/2]) / 2, rs[len(rs)-1]
}
