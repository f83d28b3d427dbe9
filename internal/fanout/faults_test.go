package fanout_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
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
			emu := emulator.New(emulator.Config{
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Faults: emulator.Faults{Throttle: 0.3, ServerError: 0.2, Seed: 7},
			})
			srv := httptest.NewServer(emu)
			defer srv.Close()
			defer emu.Close()

			mem := store.NewMemory()
			received := make([]atomic.Int32, n)
			var readers sync.WaitGroup
			for i := range n {
				c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseNow()
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						_, frame, err := c.Read(context.Background())
						if err != nil {
							return
						}
						if json.Valid(frame) {
							received[i].Add(1)
						}
					}
				}()
			}
			for _, id := range emu.ConnectionIDs() {
				if err := mem.PutConnection(context.Background(), store.Connection{ID: id}); err != nil {
					t.Fatal(err)
				}
				if err := mem.Subscribe(context.Background(), id, []string{"t"}); err != nil {
					t.Fatal(err)
				}
			}

			var retries atomic.Int64
			cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
			f := fanout.New(mem, apigw.New(cfg, srv.URL), fanout.Options{
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
			emu.Close()
			readers.Wait()
			got := 0
			for i := range received {
				switch c := received[i].Load(); c {
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
