package bench

import (
	"context"
	"fmt"
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
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", slices.Max(sizes), func(i int) []string {
		var topics []string
		for _, s := range sizes {
			if i < s {
				topics = append(topics, cpuTopic(s))
			}
		}
		return topics
	})
	if err != nil {
		return nil, err
	}
	defer subs.close()

	prof := profiler{addr: addrs.PProf, dir: cfg.Profiles}
	var rows []CPUResult
	row := func(name string, size, messages int, send func(context.Context, string) (published, error)) error {
		prof.start()
		r, err := measureCPU(ctx, subs, p.cmd.Process.Pid, size, messages, send)
		if err != nil {
			return fmt.Errorf("%s, %d subscribers: %w", name, size, err)
		}
		if err := prof.stop(fmt.Sprintf("stack-cpu-%s-%d", strings.NewReplacer(" ", "-", "/", "").Replace(name), size)); err != nil {
			return err
		}
		r.Case = name
		rows = append(rows, r)
		cfg.progress("cpu %-8s S=%-5d %8.0f deliveries/s  p50 %v p99 %v max %v  rpc p50 %v  CPU/delivery stack %v subscribers %v", name, size, r.DeliveriesPerSec, r.Latency.P50, r.Latency.P99, r.Latency.Max, r.RPC.P50, r.CPU.Stack, r.CPU.Subscribers)
		return nil
	}
	for _, size := range sizes {
		if err := row("gRPC", size, cfg.messages(size), pc.publishGRPC); err != nil {
			return rows, err
		}
	}
	if err := row("REST", cfg.CompareSize, cfg.messages(cfg.CompareSize), pc.publishREST); err != nil {
		return rows, err
	}
	s := newSeed(cfg.aws, "http://"+addrs.WS, pc.grpc)
	if err := row("baseline", cfg.CompareSize, max(3, cfg.messages(cfg.CompareSize)/10), s.publish); err != nil {
		return rows, err
	}
	// The same topic from the stack's reference publishers: how close the
	// product's SDK path comes to the prototype's plain net/http, and what
	// it saves over the SDK used naively, on the same stack, in the same run.
	for _, ref := range []struct{ name, addr string }{{"plain net/http", addrs.PlainGRPC}, {"naive SDK", addrs.NaiveGRPC}} {
		pc, err := newPublisherClient(StackAddrs{GRPC: ref.addr})
		if err != nil {
			return rows, err
		}
		err = row(ref.name, cfg.CompareSize, cfg.messages(cfg.CompareSize), pc.publishGRPC)
		pc.close()
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// measureCPU publishes messages to the size-subscriber topic one after
// another and times every delivery.
func measureCPU(ctx context.Context, subs *subscribers, stackPID, size, messages int, send func(context.Context, string) (published, error)) (CPUResult, error) {
	topic := cpuTopic(size)
	// One message first, to warm connections and caches; not counted.
	want := subs.received.Load() + int64(size)
	if _, err := send(ctx, topic); err != nil {
		return CPUResult{}, err
	}
	if !subs.waitReceived(ctx, want, time.Minute) {
		return CPUResult{}, fmt.Errorf("the warm-up message reached %d of %d subscribers", size-int(want-subs.received.Load()), size)
	}
	subs.takeLatencies(size)

	r := CPUResult{Subscribers: size, Messages: messages}
	var rpcs []time.Duration
	stackCPU, err := cpuTime(stackPID)
	if err != nil {
		return r, err
	}
	selfCPU, err := cpuTime(0)
	if err != nil {
		return r, err
	}
	start := time.Now()
	want = subs.received.Load() + int64(size*messages)
	for range messages {
		res, err := send(ctx, topic)
		if err != nil {
			return r, err
		}
		r.Failed += size - res.delivered
		rpcs = append(rpcs, res.rpc)
	}
	if !subs.waitReceived(ctx, want, time.Minute) {
		return r, fmt.Errorf("%d of %d deliveries arrived", int64(size*messages)-(want-subs.received.Load()), size*messages)
	}
	elapsed := time.Since(start)
	n := time.Duration(size * messages)
	r.DeliveriesPerSec = float64(n) / elapsed.Seconds()
	stackEnd, err := cpuTime(stackPID)
	if err != nil {
		return r, err
	}
	selfEnd, err := cpuTime(0)
	if err != nil {
		return r, err
	}
	r.CPU = CPUPerDelivery{Stack: Micros((stackEnd - stackCPU) / n), Subscribers: Micros((selfEnd - selfCPU) / n)}
	r.Latency = percentiles(subs.takeLatencies(size))
	r.RPC = percentiles(rpcs)
	return r, nil
}
