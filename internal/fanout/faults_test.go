package fanout_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/fanout"
)

// TestManagementFaults publishes through the emulated API Gateway while it
// answers a share of calls with 429 or 500: faults are retried, the ones
// that stay are counted failed, and every count matches what the sockets
// actually received.
func TestManagementFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		maxAttempts int
		wantFailed  bool // some deliveries must fail for the test to mean anything
	}{
		{"retries absorb the faults", 12, false},
		{"faults that outlast the retries are failed", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 120
			e := newEmulated(t, emulator.Config{
				Faults: emulator.Faults{Throttle: 0.3, ServerError: 0.2, Seed: 7},
			}, n, "t")

			var retries atomic.Int64
			f := fanout.New(e.store, e.poster(), fanout.Options{
				MaxAttempts: tc.maxAttempts, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
				Observer: retryCounter{&retries},
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := f.Publish(ctx, fanout.Message{Topic: "t", Data: json.RawMessage(`"x"`)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Delivered+res.Failed != n || res.Gone != 0 {
				t.Fatalf("result %+v does not account for %d subscribers", res, n)
			}
			if tc.wantFailed != (res.Failed > 0) {
				t.Fatalf("result %+v, want failures: %v", res, tc.wantFailed)
			}
			if tc.maxAttempts > 1 && retries.Load() == 0 {
				t.Fatal("no retries although half the calls fault")
			}

			// What the sockets got must equal what Publish reported: no
			// message lost behind a "delivered", none doubled by a retry.
			got := 0
			for _, c := range e.counts() {
				switch c {
				case 0:
				case 1:
					got++
				default:
					t.Errorf("a subscriber received the message %d times", c)
				}
			}
			if got != res.Delivered {
				t.Fatalf("%d sockets received the message, Publish reported %d delivered", got, res.Delivered)
			}
		})
	}
}

type retryCounter struct{ n *atomic.Int64 }

func (r retryCounter) PublishDone(fanout.Result, error, time.Duration) {}
func (r retryCounter) LookupDone(time.Duration)                        {}
func (r retryCounter) Retry()                                          { r.n.Add(1) }
