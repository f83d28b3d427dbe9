package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
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
	}{
		{"aws", runAWS, 2, " 0 lost"},
		{"cpu", runCPU, 4, " 0 lost"},
		{"lookup", runLookup, 1, "50 items"},
		{"memory", runMemory, 1, "KiB per connection"},
	} {
		rows, err := tt.run(t.Context(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", tt.scenario, err)
		}
		if len(rows) != tt.rows {
			t.Errorf("%s: %d rows, want %d: %q", tt.scenario, len(rows), tt.rows, rows)
		}
		for _, r := range rows {
			if !strings.Contains(fmt.Sprint(r), tt.want) {
				t.Errorf("%s: row %q, want %q in it", tt.scenario, r, tt.want)
			}
		}
	}
}

// TestStack serves the bench's stack in this process (no binary is built)
// and publishes through the product's publisher and both references: it
// checks that the harness measures what it claims, every delivery timed
// from its payload and every management call counted, not how fast
// anything is (that is `make bench`'s job).
func TestStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, w := io.Pipe()
	served := make(chan error, 1)
	go func() { served <- serveStack(ctx, stackConfig{Publisher: true, References: true}, w) }()
	// The stack stops last, once its clients are gone, as in the bench.
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serveStack: %v", err)
		}
	}()
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var addrs stackAddrs
	if err := json.Unmarshal(line, &addrs); err != nil {
		t.Fatal(err)
	}

	sizes := []int{5, 20}
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", 20, nestedTopics(sizes, cpuTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer subs.close()
	ours, err := newPublisherClient(addrs.GRPC, addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.close()
	for _, a := range []string{addrs.GRPC, addrs.PlainGRPC, addrs.NaiveGRPC} {
		pc, err := newPublisherClient(a, "")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.close()
		for _, size := range sizes {
			s, err := measureCPU(ctx, subs, os.Getpid(), publisherSeries{a, size, pc}, 2)
			if err != nil {
				t.Fatalf("publisher at %s, S=%d: %v", a, size, err)
			}
			if s.deliveries != 2*size || s.lost != 0 || len(s.latencies) != 2*size || len(s.rpcs) != 2 || slices.Min(s.latencies) <= 0 {
				t.Errorf("publisher at %s, S=%d: %d deliveries, %d lost, %d latencies (min %v), %d calls; want %d, 0, %d (> 0), 2",
					a, size, s.deliveries, s.lost, len(s.latencies), slices.Min(s.latencies), len(s.rpcs), 2*size, 2*size)
			}
		}
	}
	calls, err := ours.managementCalls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Warm-up and measured messages, to both topics.
	if want := float64(3 * (5 + 20)); calls["ok"] != want {
		t.Errorf("/metrics counts %v management calls by outcome, want %v ok", calls, want)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	want := percentiles{50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}
	if got := percentilesOf(d); got != want {
		t.Errorf("percentilesOf(1…100 ms) = %v, want %v", got, want)
	}
	if got := percentilesOf(nil); got != (percentiles{}) {
		t.Errorf("percentilesOf(nil) = %v, want zeros", got)
	}
}
