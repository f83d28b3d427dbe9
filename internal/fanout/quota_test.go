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
// How fast it goes is the benchmark's business (internal/bench), not this
// test's.
func TestPublishWithinTheQuota(t *testing.T) {
	t.Parallel()
	const n = 300
	e := newEmulated(t, emulator.Config{
		Quota:             emulator.Quota{Rate: 1000, Burst: 10},
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
	calls, throttled := poster.calls.Load(), poster.throttled.Load()
	t.Logf("%d calls, %d throttled", calls, throttled)
	if throttled == 0 {
		t.Errorf("no call was throttled: the quota did not bite, the test means nothing")
	}
	if throttled*4 > calls {
		t.Errorf("%d of %d calls throttled: want fewer than a quarter, a fan-out that paces itself", throttled, calls)
	}

	for i, c := range e.counts() {
		if c != 1 {
			t.Errorf("subscriber %d received the message %d times, want once", i, c)
		}
	}
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
