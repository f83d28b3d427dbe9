package fanout_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/fanout"
)

// TestPublishWithinTheQuota publishes through the emulated API Gateway
// while its account quota, far below what the fan-out could post, answers
// 429 beyond it. The fan-out is told nothing of the quota: every
// subscriber must still get the message exactly once, and the fan-out
// must pace itself to the quota rather than hammer it, so most calls pass.
// How fast it goes is the benchmark's business (bench/), not this test's.
func TestPublishWithinTheQuota(t *testing.T) {
	t.Parallel()
	const n = 300
	// The quota must bite for the test to mean anything; a machine too
	// loaded to post faster than it gets a quota half as high, again.
	for rate := 1000.0; ; rate /= 2 {
		calls, throttled := publishUnderQuota(t, n, rate)
		t.Logf("quota %v/s: %d calls, %d throttled", rate, calls, throttled)
		if throttled == 0 {
			if rate < 100 {
				t.Fatalf("no call was throttled even at a quota of %v/s: the quota never bit, the test means nothing", rate)
			}
			continue
		}
		if throttled*4 > calls {
			t.Errorf("%d of %d calls throttled: want fewer than a quarter, a fan-out that paces itself", throttled, calls)
		}
		return
	}
}

// publishUnderQuota publishes one message to n subscribers through an
// emulated API Gateway whose account quota is rate calls a second, checks
// that each subscriber got it once, and counts the calls and their 429s.
func publishUnderQuota(t *testing.T, n int, rate float64) (calls, throttled int64) {
	t.Helper()
	e := newEmulated(t, emulator.Config{
		Quota:             emulator.Quota{Rate: rate, Burst: 10},
		ManagementLatency: 2 * time.Millisecond,
	}, n, message.Topic)

	poster := &throttleCounter{next: e.poster()}
	f := fanout.New(e.store, poster, fanout.Options{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := f.Publish(ctx, message)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != n {
		t.Errorf("Result = %+v, want all %d delivered: none lost to 429s", res, n)
	}
	for i, c := range e.counts() {
		if c != 1 {
			t.Errorf("subscriber %d received the message %d times, want once", i, c)
		}
	}
	return poster.calls.Load(), poster.throttled.Load()
}

// throttleCounter counts the calls of the Poster it wraps, and their 429s.
type throttleCounter struct {
	next             fanout.Poster
	calls, throttled atomic.Int64
}

func (p *throttleCounter) PostToConnection(ctx context.Context, connectionID string, data []byte) error {
	err := p.next.PostToConnection(ctx, connectionID, data)
	p.calls.Add(1)
	if errors.Is(err, apigw.ErrThrottled) {
		p.throttled.Add(1)
	}
	return err
}
