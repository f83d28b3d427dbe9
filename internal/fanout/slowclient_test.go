package fanout_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// TestSlowSubscriberStallsNoOne subscribes one client that never reads
// beside clients that do, and publishes large messages, several at once,
// through the emulated API Gateway. The stalled client's buffer fills and
// its posts get 429 at once, so every publish ends long before the socket's
// write timeout would cut the stalled client, and every reading subscriber
// gets every message. (That the emulator then cuts it is its own test's.)
func TestSlowSubscriberStallsNoOne(t *testing.T) {
	t.Parallel()
	const (
		readers    = 4
		publishers = 8
		perWorker  = 6
		topic      = "big"
		// A publish that waited on the stalled client, for its buffer to
		// drain or for it to be cut, would take at least this long. (The
		// emulator's Close waits it out too, with the stalled writer.)
		writeTimeout = 10 * time.Second
	)
	e := newEmulated(t, emulator.Config{WriteTimeout: writeTimeout}, readers, topic)

	// The stalled client: connected and subscribed, never read from.
	before := e.emu.ConnectionIDs()
	stalled, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(e.url, "http")+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.CloseNow() })
	var stalledID string
	for _, id := range e.emu.ConnectionIDs() {
		if !slices.Contains(before, id) {
			stalledID = id
		}
	}
	if err := e.store.PutConnection(context.Background(), store.Connection{ID: stalledID}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Subscribe(context.Background(), stalledID, "", []string{topic}); err != nil {
		t.Fatal(err)
	}

	f := fanout.New(e.store, e.poster(), fanout.Options{Logger: slog.New(slog.DiscardHandler)})
	// About 100 KB each: the stalled client's buffers hold about a dozen.
	msg := fanout.Message{Topic: topic, Data: json.RawMessage(`"` + strings.Repeat("x", 100<<10) + `"`)}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		slowest time.Duration
	)
	for range publishers {
		wg.Go(func() {
			for range perWorker {
				ctx, cancel := context.WithTimeout(context.Background(), 2*writeTimeout)
				start := time.Now()
				res, err := f.Publish(ctx, msg)
				took := time.Since(start)
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				if res.Delivered < readers {
					t.Errorf("Result %+v: want at least the %d reading subscribers delivered", res, readers)
				}
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("slowest publish: %v", slowest)
	// Under the write timeout, with room for a loaded machine: alone, the
	// slowest takes 1-2 s, and under make test's load once took 5 s.
	if slowest > writeTimeout*3/4 {
		t.Errorf("slowest publish took %v: it waited on the client that does not read", slowest)
	}

	for i, c := range e.counts() {
		if c != publishers*perWorker {
			t.Errorf("reading subscriber %d received %d messages, want all %d", i, c, publishers*perWorker)
		}
	}
}
