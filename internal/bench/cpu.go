package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPUResult is one row of scenario 3: M messages to S subscribers on one
// topic, one publish at a time, with no added latency and no quota.
type CPUResult struct {
	Case             string      `json:"case"` // gRPC, REST or baseline
	Subscribers      int         `json:"subscribers"`
	Messages         int         `json:"messages"`
	DeliveriesPerSec float64     `json:"deliveries_per_sec"`
	Latency          Percentiles `json:"publish_to_receive"` // over every delivery
	RPC              Percentiles `json:"publish_rpc"`        // over every publish
	Failed           int         `json:"failed"`
	// CPU is the CPU time per delivery: of the stack (emulator, publisher,
	// store) and of the subscribers. Unlike deliveries/s, it hardly
	// depends on what else the machine runs.
	CPU CPUPerDelivery `json:"cpu_per_delivery"`
}

// CPUPerDelivery splits the CPU time of a delivery by process.
type CPUPerDelivery struct {
	Stack       Micros `json:"stack_us"`
	Subscribers Micros `json:"subscribers_us"`
}

// Micros is a duration that JSON shows in microseconds.
type Micros time.Duration

func (m Micros) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(m).Seconds()*1e6, 'f', 1, 64)), nil
}

func (m *Micros) UnmarshalJSON(b []byte) error {
	us, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*m = Micros(us * float64(time.Microsecond))
	return nil
}

func (m Micros) String() string { return fmt.Sprintf("%.1fµs", time.Duration(m).Seconds()*1e6) }

func cpuTopic(size int) string { return fmt.Sprint("cpu-", size) }

// runCPU is scenario 3: the CPU cost of a delivery on this machine, where
// nothing but the CPU limits the fan-out.
func runCPU(ctx context.Context, cfg Config) ([]CPUResult, error) {
	p, addrs, err := startStackProc(cfg.exe, StackConfig{Publisher: true, References: true, PProf: cfg.Profiles != ""})
	if err != nil {
		return nil, err
	}
	defer p.stop()
	pc, err := newPublisherClient(addrs)
	if err != nil {
		return nil, err
	}
	defer pc.close()
	sizes := cfg.CPUSizes
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", slices.Max(sizes), nestedTopics(sizes, cpuTopic))
	if err != nil {
		return nil, err
	}
	defer subs.close()

	prof := profiler{addr: addrs.PProf, dir: cfg.Profiles}
	type series struct {
		name string
		size int
		send func(context.Context, string) (published, error)
	}
	// measure runs series, their messages in rounds that alternate between
	// them, so that what else the machine does weighs on each alike: the
	// comparisons are ratios within one run.
	measure := func(rounds int, ss ...series) ([]CPUResult, error) {
		samples := make([]sample, len(ss))
		for round := range rounds {
			for i, s := range ss {
				messages := max(1, cfg.messages(s.size)/rounds)
				if s.name == "baseline" {
					messages = max(1, messages/10) // it is slow
				}
				prof.start()
				got, err := measureCPU(ctx, subs, p.cmd.Process.Pid, s.size, messages, s.send)
				if err != nil {
					return nil, fmt.Errorf("%s, %d subscribers: %w", s.name, s.size, err)
				}
				name := fmt.Sprintf("stack-cpu-%s-%d-%d", strings.NewReplacer(" ", "-", "/", "").Replace(s.name), s.size, round+1)
				if err := prof.stop(name); err != nil {
					return nil, err
				}
				samples[i].add(got)
			}
		}
		var rows []CPUResult
		for i, s := range ss {
			r := samples[i].result(s.name, s.size)
			cfg.progress("cpu %-14s S=%-5d %8.0f deliveries/s  p50 %v p99 %v max %v  rpc p50 %v  CPU/delivery stack %v subscribers %v", r.Case, r.Subscribers, r.DeliveriesPerSec, r.Latency.P50, r.Latency.P99, r.Latency.Max, r.RPC.P50, r.CPU.Stack, r.CPU.Subscribers)
			rows = append(rows, r)
		}
		return rows, nil
	}

	// Every size over gRPC; at CompareSize, the same topic through REST,
	// the seed's algorithm, and the stack's reference publishers: the
	// prototype's plain net/http, and the SDK used naively.
	var rows []CPUResult
	for _, size := range sizes {
		if size == cfg.CompareSize {
			continue
		}
		r, err := measure(1, series{"gRPC", size, pc.publishGRPC})
		if err != nil {
			return rows, err
		}
		rows = append(rows, r...)
	}
	plain, err := newPublisherClient(StackAddrs{GRPC: addrs.PlainGRPC})
	if err != nil {
		return rows, err
	}
	defer plain.close()
	naive, err := newPublisherClient(StackAddrs{GRPC: addrs.NaiveGRPC})
	if err != nil {
		return rows, err
	}
	defer naive.close()
	seed := newSeed(cfg.aws, "http://"+addrs.WS, pc.grpc)
	size := cfg.CompareSize
	r, err := measure(cpuRounds,
		series{"gRPC", size, pc.publishGRPC},
		series{"REST", size, pc.publishREST},
		series{"baseline", size, seed.publish},
		series{"plain net/http", size, plain.publishGRPC},
		series{"naive SDK", size, naive.publishGRPC},
	)
	rows = append(rows, r...)
	slices.SortStableFunc(rows, func(a, b CPUResult) int { return cmp.Compare(caseOrder(a), caseOrder(b)) })
	return rows, err
}

// cpuRounds is how many rounds the comparisons alternate in.
const cpuRounds = 3

// caseOrder orders the rows of the table: gRPC by size, then the rest.
func caseOrder(r CPUResult) int {
	if r.Case == "gRPC" {
		return r.Subscribers
	}
	return math.MaxInt32 + slices.Index([]string{"REST", "baseline", "plain net/http", "naive SDK"}, r.Case)
}

// sample is what some messages to one topic came to.
type sample struct {
	messages, deliveries, failed int
	elapsed                      time.Duration
	cpu                          cpuUse
	latencies, rpcs              []time.Duration
}

func (s *sample) add(o sample) {
	s.messages += o.messages
	s.deliveries += o.deliveries
	s.failed += o.failed
	s.elapsed += o.elapsed
	s.cpu.stack += o.cpu.stack
	s.cpu.self += o.cpu.self
	s.latencies = append(s.latencies, o.latencies...)
	s.rpcs = append(s.rpcs, o.rpcs...)
}

func (s sample) result(name string, size int) CPUResult {
	n := time.Duration(max(1, s.deliveries))
	return CPUResult{
		Case:             name,
		Subscribers:      size,
		Messages:         s.messages,
		DeliveriesPerSec: float64(s.deliveries) / s.elapsed.Seconds(),
		Latency:          percentiles(s.latencies),
		RPC:              percentiles(s.rpcs),
		Failed:           s.failed,
		CPU:              CPUPerDelivery{Stack: Micros(s.cpu.stack / n), Subscribers: Micros(s.cpu.self / n)},
	}
}

// measureCPU publishes messages to the size-subscriber topic one after
// another, after one to warm up, and times every delivery.
func measureCPU(ctx context.Context, subs *subscribers, stackPID, size, messages int, send func(context.Context, string) (published, error)) (sample, error) {
	topic := cpuTopic(size)
	want := subs.received.Load() + int64(size)
	if _, err := send(ctx, topic); err != nil {
		return sample{}, err
	}
	if !subs.waitReceived(ctx, want, time.Minute) {
		return sample{}, fmt.Errorf("the warm-up message reached %d of %d subscribers", size-int(want-subs.received.Load()), size)
	}
	subs.takeLatencies(size)

	s := sample{messages: messages}
	cpu0, err := readCPU(stackPID)
	if err != nil {
		return s, err
	}
	start := time.Now()
	want = subs.received.Load()
	for range messages {
		res, err := send(ctx, topic)
		if err != nil {
			return s, err
		}
		s.failed += size - res.delivered
		s.deliveries += res.delivered
		want += int64(res.delivered)
		s.rpcs = append(s.rpcs, res.rpc)
	}
	if !subs.waitReceived(ctx, want, time.Minute) {
		return s, fmt.Errorf("%d of %d deliveries arrived", s.deliveries-int(want-subs.received.Load()), s.deliveries)
	}
	s.elapsed = time.Since(start)
	cpu1, err := readCPU(stackPID)
	if err != nil {
		return s, err
	}
	s.cpu = cpu1.since(cpu0)
	s.latencies = subs.takeLatencies(size)
	return s, nil
}
