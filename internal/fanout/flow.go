package fanout

import (
	"context"
	"maps"
	"math"
	"sync"
	"time"

	smithytime "github.com/aws/smithy-go/time"
)

// The flow's constants are properties of the method, not of a machine.
const (
	// minWindow is the fewest posts a publish may keep in flight: where
	// the CPU, not the network, is the bottleneck, a few per core keep
	// every stage of the pipeline busy.
	minWindow = 16
	// A round ends once roundSamples posts started under the current pace
	// have ended, and no sooner than one call time (the shortest seen),
	// nor than minRound: enough to measure a rate and a share of 429s.
	roundSamples = 32
	minRound     = 5 * time.Millisecond
	// windowGain is the window over the bandwidth-delay product. Each
	// round measures the window of the round before, so a gain of 3 grows
	// a window that limits the rate by √3 a round: a ×100 ramp in 9 call
	// times.
	windowGain = 3
	// rateRounds is how many rounds the delivery rate's maximum is kept;
	// rttWindow, how long the shortest call time is.
	rateRounds = 10
	rttWindow  = 10 * time.Second
	// A round whose posts were throttled at least cutShare of the time
	// (beyond the known noise) sets the pace to the rate that succeeded,
	// plus probe, so that the account's token bucket stays drained: full
	// use of the quota for about a probe's share of 429s. A round without
	// 429s in which the pace held posts back raises it by growth, to find
	// a larger quota or an account that other callers left.
	cutShare = 0.05
	probe    = 0.01
	growth   = 0.05
	// maxCuts is how many cuts in a row may fail to settle the 429s before
	// they are taken for noise the pace does not cause (injected faults,
	// clients whose buffers are full). Noise fades by noiseFade a round.
	maxCuts   = 3
	noiseFade = 0.99
	// maxFull bounds the connections remembered as throttled (see
	// flow.full): a few clients with full buffers, not an account's worth.
	maxFull = 4096
)

// flow decides how many posts a publish keeps in flight and how fast posts
// start, from what the management API answers. A Fanout has one, shared by
// all its publishes, as they share the account's quota.
//
// Like TCP's BBR, it models the path by its bandwidth (the fastest delivery
// rate of the last rounds, each post's sample being the answers that came
// while it was in flight) and its delay (the shortest call time of the last
// seconds):
//
//   - The window, posts in flight per publish, is windowGain times their
//     product: enough to hide the call time, not so many that calls queue
//     where the CPU is the bottleneck. While the window is what limits the
//     rate, each round grows it (slow start).
//   - When the account throttles (429), the pace of starts follows what the
//     account accepted (see cutShare). The quota is AWS's token bucket,
//     10 000 calls/s by default, shared by every caller in the account and
//     Region: no constant could know what is left of it.
//   - A 429 also means a client's buffer is full: the client has stopped
//     reading. That one connection is refused, again and again, while the
//     rest pass; slowing down would slow every other connection and cure
//     nothing. The answer carries nothing to tell the two apart, so the
//     flow tells them by connection: the account's bucket refuses whichever
//     calls come while it is empty, so a connection refused again, while no
//     other connection was newly refused since its last 429, is taken for
//     a full buffer, and its 429 is not a sample of the pace (see classify).
//
// Posts waiting for the pace hold no connection: the calls in flight are
// the pace times the call time, whatever the window.
type flow struct {
	maxWindow int
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error // a test's fake clock replaces it

	mu     sync.Mutex
	window int
	// The pace: posts start no faster than rate (0: unpaced), at next at
	// the earliest. Changing it starts a new epoch: a round only counts
	// posts started in its own epoch.
	rate      float64
	next      time.Time
	epoch     uint64
	cutEpoch  uint64    // the epoch the last cut started
	delivered uint64    // answers but 429s, ever
	inflight  int       // posts between acquire and release
	idleSince time.Time // when inflight last fell to 0
	round     round
	// Filters over past rounds.
	rates    [rateRounds]float64
	rounds   int
	minRTT   time.Duration
	minRTTAt time.Time
	// Throttling episodes: the pace before the first cut, the cuts so
	// far, and the share of 429s the pace has been found not to cause.
	before float64
	cuts   int
	noise  float64
	// full holds the connections whose last post was throttled; fresh
	// counts the 429s of connections not in it.
	full  map[string]lastThrottle
	fresh uint64
}

// lastThrottle is when a connection's last post was throttled, and the
// count of fresh 429s then.
type lastThrottle struct {
	at    time.Time
	fresh uint64
}

// round is what came back since the round started. A round does not span
// a pause with nothing in flight (between publishes): the rate it measures
// is the account's, not the callers'.
type round struct {
	start time.Time
	ok    int // answers but 429s, to posts of any epoch: what the account let through
	// The posts started in this epoch that ended, and the 429s among
	// them: the share of 429s the current pace gets.
	sampled, throttled int
	maxRate            float64 // the best delivery-rate sample
	paced              bool    // the pace held a post back
}

func newFlow(maxWindow int) *flow {
	f := &flow{maxWindow: maxWindow, now: time.Now, sleep: smithytime.SleepWithContext, full: make(map[string]lastThrottle)}
	f.window = min(minWindow, maxWindow)
	f.round.start = f.now()
	return f
}

// windowSize is how many posts a publish may have in flight now.
func (f *flow) windowSize() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.window
}

// ticket is a post allowed to start.
type ticket struct {
	epoch     uint64
	delivered uint64
	start     time.Time
}

// acquire waits for the pace to let a post start, and reports false if ctx
// ended first.
func (f *flow) acquire(ctx context.Context) (ticket, bool) {
	f.mu.Lock()
	now := f.now()
	if f.inflight == 0 && now.Sub(f.idleSince) > max(minRound, f.minRTT) {
		f.round = round{start: now}
	}
	f.inflight++
	var wait time.Duration
	if f.rate > 0 {
		slot := f.next
		if slot.Before(now) {
			slot = now
		}
		f.next = slot.Add(time.Duration(float64(time.Second) / f.rate))
		if wait = slot.Sub(now); wait > 0 {
			f.round.paced = true
		}
	}
	f.mu.Unlock()
	ok := wait <= 0 || f.sleep(ctx, wait) == nil
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok {
		if f.inflight--; f.inflight == 0 {
			f.idleSince = f.now()
		}
		return ticket{}, false
	}
	return ticket{epoch: f.epoch, delivered: f.delivered, start: f.now()}, true
}

// answer is how a post ended, for the flow.
type answer int

const (
	answered   answer = iota // any answer but a 429
	throttled                // 429
	abandoned                // the publish's context ended it: no measure
	clientFull               // 429 again on one connection: its client's buffer, not the pace
)

// release accounts for a post to connID that ended. For a 429, it reports
// whether the pace was cut since the post started (this very answer may be
// what cut it): the post was throttled for a pace that is gone, and
// retrying it should not count against its attempts.
func (f *flow) release(t ticket, a answer, connID string) (forgiven bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	if f.inflight == 0 {
		f.idleSince = f.now()
	}
	if a == abandoned {
		return false
	}
	now := f.now()
	a = f.classify(a, connID, now)
	if a == clientFull {
		// Not delivered, and not the account's answer to the pace.
		return false
	}
	rtt := now.Sub(t.start)
	if f.minRTT == 0 || rtt < f.minRTT || now.Sub(f.minRTTAt) > rttWindow {
		f.minRTT, f.minRTTAt = rtt, now
	}
	r := &f.round
	if a == answered {
		f.delivered++
		r.ok++
		if rtt > 0 {
			r.maxRate = max(r.maxRate, float64(f.delivered-t.delivered)/rtt.Seconds())
		}
	}
	if t.epoch == f.epoch { // started under the current pace
		r.sampled++
		if a == throttled {
			r.throttled++
		}
	}
	if r.sampled >= roundSamples && now.Sub(r.start) >= max(minRound, f.minRTT) {
		f.endRound(now)
	}
	return a == throttled && t.epoch < f.cutEpoch
}

// classify tells a 429 that a connection's full buffer explains from one
// that may be the account's, and keeps f.full up to date.
//
// A connection's first 429 may be either. Its next one, with no other
// connection newly refused in between, is its own: the account's bucket,
// when empty, refuses whoever comes, and here everyone else got through.
// With other connections newly refused meanwhile, it may be the account's
// still, and counts as such.
func (f *flow) classify(a answer, connID string, now time.Time) answer {
	if a != throttled {
		delete(f.full, connID)
		return a
	}
	if last, ok := f.full[connID]; ok && now.Sub(last.at) <= rttWindow {
		f.full[connID] = lastThrottle{now, f.fresh}
		if last.fresh == f.fresh {
			return clientFull
		}
		return throttled
	}
	f.fresh++
	if len(f.full) >= maxFull {
		maps.DeleteFunc(f.full, func(_ string, last lastThrottle) bool { return now.Sub(last.at) > rttWindow })
	}
	if len(f.full) < maxFull {
		f.full[connID] = lastThrottle{now, f.fresh}
	}
	return throttled
}

// endRound updates the window and the pace from the round that ended.
func (f *flow) endRound(now time.Time) {
	r := f.round
	f.round = round{start: now}
	elapsed := now.Sub(r.start).Seconds()
	okRate := float64(r.ok) / elapsed
	f.rates[f.rounds%rateRounds] = r.maxRate
	f.rounds++
	var maxRate float64
	for _, x := range f.rates {
		maxRate = max(maxRate, x)
	}
	bdp := maxRate * f.minRTT.Seconds()
	f.window = min(f.maxWindow, max(minWindow, int(math.Ceil(windowGain*bdp))))

	share := float64(r.throttled) / float64(r.sampled)
	// Noise found earlier fades, in case the pace matters after all.
	f.noise *= noiseFade
	switch cut := f.noise + cutShare; {
	case share >= cut && f.cuts == maxCuts:
		// Cut after cut, the share stays: the pace is not what the 429s
		// answer. Back to the pace before the episode.
		f.noise, f.rate, f.cuts = share, f.before, 0
		f.epoch++
	case share >= cut:
		if f.cuts == 0 {
			f.before = f.rate
		}
		f.cuts++
		switch {
		case okRate == 0:
			// Nothing passed: halve whatever was tried.
			f.rate = float64(r.sampled) / elapsed / 2
		case f.rate > 0:
			// At most halved: a round is a small sample.
			f.rate = max(okRate*(1+probe), f.rate/2)
		default:
			f.rate = okRate * (1 + probe)
		}
		f.epoch++
		f.cutEpoch = f.epoch
	case f.cuts > 0 && share < cutShare/2:
		// The cuts settled the 429s: the episode is over. Growing
		// waits for the next round, lest the cut be undone at once.
		f.cuts = 0
	case r.throttled == 0 && r.paced && f.rate > 0:
		// Up to what was delivered, and a little more: a pace far above
		// the delivery rate holds nothing back, and would overshoot.
		f.rate = min(f.rate*(1+growth), maxRate*(1+2*growth))
		f.epoch++
	}
}
