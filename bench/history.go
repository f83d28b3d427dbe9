package main

import (
	"context"
	"fmt"
	"time"
)

// historyRounds is how many rounds the history comparison alternates its
// stacks in (more than cpu's: the difference it looks for is small, and
// the median of the rounds' ratios shrugs off a round that other work on
// the machine slowed).
const historyRounds = 8

// historyStack is one stack of the history comparison: its store and
// HISTORY_TTL.
type historyStack struct {
	store, ttl string
	cfg        stackConfig
}

// runHistory is what positions and history add to a publish: the same
// publishes at S = compareSize, no latency, no quota, to stacks that differ
// only in HISTORY_TTL (0: a position per message, nothing kept; the
// default, 5m: the message kept too), on the in-memory store (what they
// cost in CPU) and on DynamoDB (dynalite: what the calls add in time).
// The stacks run side by side and take their turns in alternating rounds,
// so that what else the machine does weighs on each alike.
func runHistory(ctx context.Context, cfg options) ([]row, error) {
	endpoint, stopDB, err := startDynalite()
	if err != nil {
		return nil, err
	}
	defer stopDB()
	size := cfg.compareSize
	stacks := []historyStack{
		{"memory", "0", stackConfig{HistoryTTL: "0"}},
		{"memory", "5m", stackConfig{HistoryTTL: "5m"}},
		{"dynalite", "0", stackConfig{HistoryTTL: "0", DynamoDB: endpoint, Table: "wsgateway-history-0"}},
		{"dynalite", "5m", stackConfig{HistoryTTL: "5m", DynamoDB: endpoint, Table: "wsgateway-history-5m"}},
	}
	type running struct {
		stack *child
		subs  *subscribers
		pc    *publisherClient
	}
	rs := make([]running, len(stacks))
	for i, h := range stacks {
		stack, addrs, err := startStack(h.cfg)
		if err != nil {
			return nil, err
		}
		defer stack.stop()
		subs, err := connect(ctx, "ws://"+addrs.WS+"/", size, func(int) []string { return []string{cpuTopic(size)} })
		if err != nil {
			return nil, fmt.Errorf("%s, HISTORY_TTL=%s: %w", h.store, h.ttl, err)
		}
		defer subs.close()
		pc, err := newPublisherClient(addrs.GRPC, "")
		if err != nil {
			return nil, err
		}
		defer pc.close()
		rs[i] = running{stack, subs, pc}
		progress("history: %s, HISTORY_TTL=%s: %d subscribers connected; the stack's pprof: http://%s/debug/pprof/", h.store, h.ttl, size, addrs.Control)
	}

	samples, rates, err := alternate(len(stacks), historyRounds, func(i int, s *sample) error {
		r := rs[i]
		if err := measureCPU(ctx, r.subs, r.stack.pid(), r.pc, size, max(1, 2*cfg.messages(size)/historyRounds), s); err != nil {
			return fmt.Errorf("%s, HISTORY_TTL=%s: %w", stacks[i].store, stacks[i].ttl, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var rows []row
	for i := 0; i < len(stacks); i += 2 {
		none, kept := samples[i], samples[i+1]
		for j, s := range []sample{none, kept} {
			h := stacks[i+j]
			r := s.row("", size)
			r.scenario = "history"
			r.name = fmt.Sprintf("%s, HISTORY_TTL=%s, S=%d, M=%d", h.store, h.ttl, size, s.messages)
			if j == 1 {
				// The median of the rounds' ratios: each round's two
				// stacks ran back to back, under the same load.
				lo, ratio, hi := ratios(rates[i], rates[i+1])
				met := "met"
				if ratio < 0.95 {
					met = "not met"
				}
				n0, n1 := time.Duration(max(1, none.deliveries)), time.Duration(max(1, s.deliveries))
				r.compare = fmt.Sprintf("%.3f× the rate of HISTORY_TTL=0, median of %d rounds (%.2f–%.2f; %s); over the row %.3f×; stack CPU %.3f×; RPC p50 %+.2fms; %s",
					ratio, len(rates[i]), lo, hi, met, s.rate()/none.rate(),
					float64(s.cpu.stack/n1)/float64(max(1, none.cpu.stack/n0)),
					(quantile(s.rpcs, .5)-quantile(none.rpcs, .5)).Seconds()*1e3, r.compare)
				r.target = "≥ 0.95× HISTORY_TTL=0"
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// alternate measures each of n stacks once a round for rounds rounds, every
// other round backwards so that no stack is always first, and returns what
// each stack's rounds came to and each round's rate, by stack.
func alternate(n, rounds int, measure func(i int, s *sample) error) (samples []sample, rates [][]float64, err error) {
	samples = make([]sample, n)
	rates = make([][]float64, n)
	for round := range rounds {
		for k := range n {
			i := k
			if round%2 == 1 {
				i = n - 1 - k
			}
			var s sample
			if err := measure(i, &s); err != nil {
				return nil, nil, err
			}
			rates[i] = append(rates[i], s.rate())
			samples[i].add(s)
		}
	}
	return samples, rates, nil
}

// add adds what another sample of the same publisher and topic came to.
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
