package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// streamStack is a fan-out over the real in-memory store, subscribers,
// positions, history and keys alike, posting to a recorder.
type streamStack struct {
	mem    *store.Memory
	faulty *faultyStreams
	poster *recordingPoster
	fanout *fanout.Fanout
}

// newStreamStack subscribes conns connections to topic.
func newStreamStack(t *testing.T, topic string, conns int, historyTTL time.Duration) *streamStack {
	t.Helper()
	mem := store.NewMemory()
	for i := range conns {
		id := fmt.Sprintf("conn-%d", i)
		if err := mem.PutConnection(t.Context(), store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := mem.Subscribe(t.Context(), id, "", []string{topic}); err != nil {
			t.Fatal(err)
		}
	}
	s := &streamStack{mem: mem, faulty: &faultyStreams{Streams: mem}, poster: &recordingPoster{}}
	opts := fanout.Options{
		Logger:     slog.New(slog.DiscardHandler),
		Streams:    s.faulty,
		HistoryTTL: historyTTL,
	}
	s.fanout = fanout.New(mem, s.poster, opts)
	return s
}

// faultyStreams fails the named Streams calls with store.ErrUnavailable,
// as DynamoDB does when it throttles or cannot be reached.
type faultyStreams struct {
	store.Streams
	mu       sync.Mutex
	failing  map[string]bool
	released atomic.Int32
	// flaky fails this many of the next calls of a method, then lets
	// them through, as a table that throttles for a moment.
	flaky map[string]int
}

func (f *faultyStreams) fail(methods ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = map[string]bool{}
	for _, m := range methods {
		f.failing[m] = true
	}
}

func (f *faultyStreams) err(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing[method] {
		return fmt.Errorf("%s: %w: injected", method, store.ErrUnavailable)
	}
	if f.flaky[method] > 0 {
		f.flaky[method]--
		return fmt.Errorf("%s: %w: injected for a moment", method, store.ErrUnavailable)
	}
	return nil
}

func (f *faultyStreams) NextPosition(ctx context.Context, topic string, keep time.Duration) (store.Position, error) {
	if err := f.err("NextPosition"); err != nil {
		return store.Position{}, err
	}
	return f.Streams.NextPosition(ctx, topic, keep)
}

func (f *faultyStreams) Retain(ctx context.Context, topic string, pos store.Position, m store.Retained, ttl time.Duration) error {
	if err := f.err("Retain"); err != nil {
		return err
	}
	return f.Streams.Retain(ctx, topic, pos, m, ttl)
}

func (f *faultyStreams) Reserve(ctx context.Context, topic, key string) (store.Outcome, error) {
	if err := f.err("Reserve"); err != nil {
		return store.Outcome{}, err
	}
	return f.Streams.Reserve(ctx, topic, key)
}

func (f *faultyStreams) Complete(ctx context.Context, topic, key string, o store.Outcome) error {
	if err := f.err("Complete"); err != nil {
		return err
	}
	return f.Streams.Complete(ctx, topic, key, o)
}

func (f *faultyStreams) Release(ctx context.Context, topic, key string) error {
	f.released.Add(1)
	if err := f.err("Release"); err != nil {
		return err
	}
	return f.Streams.Release(ctx, topic, key)
}

// recordingPoster keeps every envelope posted, per connection; delay,
// when set, holds each post that long, so concurrent publishes overlap.
type recordingPoster struct {
	delay time.Duration
	mu    sync.Mutex
	posts map[string][][]byte
}

func (p *recordingPoster) PostToConnection(ctx context.Context, id string, data []byte) error {
	if p.delay > 0 {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return ctx.Err() // as the SDK client does when its call is cut
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.posts == nil {
		p.posts = map[string][][]byte{}
	}
	p.posts[id] = append(p.posts[id], data)
	return nil
}

func (p *recordingPoster) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range p.posts {
		n += len(b)
	}
	return n
}

func (p *recordingPoster) of(id string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.posts[id])
}

func positioned(topic, data string) fanout.Message {
	return fanout.Message{Topic: topic, Data: json.RawMessage(data)}
}

// Every publish takes the topic's next offset; each subscriber's frame
// carries it, and History keeps the very bytes subscribers got.
func TestPublishPositions(t *testing.T) {
	t.Parallel()
	s := newStreamStack(t, "orders", 2, time.Minute)
	var epoch string
	for i := 1; i <= 3; i++ {
		res, err := s.fanout.Publish(t.Context(), positioned("orders", fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if res.Position.Offset != uint64(i) || res.Position.Epoch == "" || res.Delivered != 2 || res.Duplicate {
			t.Fatalf("publish %d: %+v, want offset %d in an epoch, 2 delivered", i, res, i)
		}
		if i == 1 {
			epoch = res.Position.Epoch
		} else if res.Position.Epoch != epoch {
			t.Fatalf("publish %d: epoch %q, want the first's %q", i, res.Position.Epoch, epoch)
		}
	}
	frames := s.poster.of("conn-0")
	if len(frames) != 3 {
		t.Fatalf("conn-0 got %d frames, want 3", len(frames))
	}
	for i, f := range frames {
		m, err := wsproto.DecodeMessage(f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset != uint64(i+1) || m.Epoch != epoch || string(m.Data) != fmt.Sprint(i+1) {
			t.Errorf("frame %d: %s, want offset %d, epoch %s", i, f, i+1, epoch)
		}
	}
	kept, pos, err := s.mem.History(t.Context(), "orders", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if pos != (store.Position{Epoch: epoch, Offset: 3}) || len(kept) != 2 {
		t.Fatalf("History since 1 = %d messages at %+v, want 2 at offset 3 of %s", len(kept), pos, epoch)
	}
	for i, r := range kept {
		if r.Offset != uint64(i+2) || string(r.Envelope) != string(frames[i+1]) {
			t.Errorf("retained %d: offset %d %s, want offset %d and the posted %s", i, r.Offset, r.Envelope, i+2, frames[i+1])
		}
	}
}

// HISTORY_TTL=0 keeps nothing, but every message still has a position.
func TestPublishWithoutHistory(t *testing.T) {
	t.Parallel()
	s := newStreamStack(t, "orders", 1, 0)
	for i := 1; i <= 2; i++ {
		res, err := s.fanout.Publish(t.Context(), positioned("orders", "1"))
		if err != nil || res.Position.Offset != uint64(i) {
			t.Fatalf("publish %d: %+v, %v; want offset %d", i, res, err, i)
		}
	}
	kept, pos, err := s.mem.History(t.Context(), "orders", 0, 10)
	if err != nil || len(kept) != 0 || pos.Offset != 2 {
		t.Fatalf("History = %d messages at %+v (%v), want none at offset 2", len(kept), pos, err)
	}
}

// Under many concurrent publishers the offsets are 1..n, each once.
func TestPublishConcurrentOffsets(t *testing.T) {
	t.Parallel()
	const publishers, each = 16, 50
	s := newStreamStack(t, "busy", 1, time.Minute)
	offsets := make(chan uint64, publishers*each)
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range each {
				res, err := s.fanout.Publish(t.Context(), positioned("busy", `"x"`))
				if err != nil {
					t.Error(err)
					return
				}
				offsets <- res.Position.Offset
			}
		})
	}
	wg.Wait()
	close(offsets)
	seen := make([]int, publishers*each+1)
	for o := range offsets {
		if o == 0 || o > publishers*each {
			t.Fatalf("offset %d out of 1..%d", o, publishers*each)
		}
		seen[o]++
	}
	for o, n := range seen[1:] {
		if n != 1 {
			t.Errorf("offset %d taken %d times", o+1, n)
		}
	}
	// The frames carry the same offsets.
	got := map[uint64]bool{}
	for _, f := range s.poster.of("conn-0") {
		m, err := wsproto.DecodeMessage(f)
		if err != nil {
			t.Fatal(err)
		}
		got[m.Offset] = true
	}
	if len(got) != publishers*each {
		t.Errorf("the subscriber got %d distinct offsets, want %d", len(got), publishers*each)
	}
}

// A message too large to deliver is refused before it takes a position:
// the next one gets offset 1, and nobody sees a gap.
func TestPublishTooLargeTakesNoOffset(t *testing.T) {
	t.Parallel()
	s := newStreamStack(t, "big", 1, time.Minute)
	// Small enough without a position, too large with the longest one:
	// the bound, not the unpositioned size, decides.
	base, err := wsproto.EncodeMessage(wsproto.Message{Topic: "big", ID: "00000000-0000-4000-8000-000000000000", Data: json.RawMessage(`""`), PublishTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	data := json.RawMessage(`"` + strings.Repeat("x", fanout.MaxEnvelopeBytes-len(base)-10) + `"`)
	_, err = s.fanout.Publish(t.Context(), fanout.Message{Topic: "big", Data: data})
	if !errors.Is(err, fanout.ErrInvalid) || !strings.Contains(err.Error(), "room for its position") {
		t.Fatalf("err = %v, want ErrInvalid about the envelope with its position", err)
	}
	if n := s.poster.count(); n != 0 {
		t.Fatalf("%d posts, want none", n)
	}
	res, err := s.fanout.Publish(t.Context(), positioned("big", "1"))
	if err != nil || res.Position.Offset != 1 {
		t.Fatalf("next publish = %+v, %v; want offset 1", res, err)
	}
}

// When the position, the retention or the subscriber read fails, nothing
// is posted and the key is freed: the caller's retry goes through and is
// delivered, not answered as a duplicate of a publish nobody got.
func TestPublishStreamFaults(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"NextPosition", "Retain", "Reserve"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			s := newStreamStack(t, "orders", 2, time.Minute)
			s.faulty.fail(method)
			m := positioned("orders", "1")
			m.IdempotencyKey = "k-1"
			_, err := s.fanout.Publish(t.Context(), m)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("err = %v, want store.ErrUnavailable", err)
			}
			if n := s.poster.count(); n != 0 {
				t.Fatalf("%d posts after a failed %s, want none", n, method)
			}
			if method != "Reserve" && s.faulty.released.Load() != 1 {
				t.Errorf("key released %d times, want once", s.faulty.released.Load())
			}

			s.faulty.fail()
			ctx, cancel := context.WithTimeout(t.Context(), time.Second) // a key left pending would block the retry
			defer cancel()
			res, err := s.fanout.Publish(ctx, m)
			if err != nil || res.Duplicate || res.Delivered != 2 {
				t.Fatalf("retry = %+v, %v; want a fresh publish delivered to 2", res, err)
			}
			// A failed retention took an offset no subscriber got; a
			// failed NextPosition or Reserve took none.
			want := uint64(1)
			if method == "Retain" {
				want = 2
			}
			if res.Position.Offset != want {
				t.Errorf("retry took offset %d, want %d", res.Position.Offset, want)
			}
		})
	}
	t.Run("Release fails twice", func(t *testing.T) {
		t.Parallel()
		s := newStreamStack(t, "orders", 2, time.Minute)
		s.faulty.fail("NextPosition")
		s.faulty.flaky = map[string]int{"Release": 2}
		m := positioned("orders", "1")
		m.IdempotencyKey = "k-1"
		if _, err := s.fanout.Publish(t.Context(), m); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("err = %v, want store.ErrUnavailable", err)
		}
		s.faulty.fail()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if res, err := s.fanout.Publish(ctx, m); err != nil || res.Duplicate || res.Delivered != 2 {
			t.Fatalf("retry = %+v, %v; want a fresh publish delivered to 2", res, err)
		}
	})
	t.Run("subscriber read", func(t *testing.T) {
		t.Parallel()
		mem := store.NewMemory()
		faulty := &faultyStreams{Streams: mem}
		subs := newSubs("orders", 2)
		subs.failRead = 1
		poster := &recordingPoster{}
		f := fanout.New(subs, poster, fanout.Options{Logger: slog.New(slog.DiscardHandler), Streams: faulty, HistoryTTL: time.Minute})
		m := positioned("orders", "1")
		m.IdempotencyKey = "k-1"
		if _, err := f.Publish(t.Context(), m); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("err = %v, want store.ErrUnavailable", err)
		}
		res, err := f.Publish(t.Context(), m)
		if err != nil || res.Duplicate || res.Delivered != 2 || poster.count() != 2 {
			t.Fatalf("retry = %+v, %v (%d posts); want a fresh publish delivered to 2", res, err, poster.count())
		}
	})
	t.Run("Complete fails twice", func(t *testing.T) {
		t.Parallel()
		// Settling the key is tried again: left pending, it would hold
		// every retry until the idempotency window passed.
		s := newStreamStack(t, "orders", 2, time.Minute)
		s.faulty.flaky = map[string]int{"Complete": 2}
		m := positioned("orders", "1")
		m.IdempotencyKey = "k-1"
		first, err := s.fanout.Publish(t.Context(), m)
		if err != nil || first.Delivered != 2 {
			t.Fatalf("Publish = %+v, %v; want delivered to 2", first, err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second) // a pending key would block the retry
		defer cancel()
		again, err := s.fanout.Publish(ctx, m)
		if err != nil || !again.Duplicate || again.MessageID != first.MessageID || s.poster.count() != 2 {
			t.Fatalf("retry = %+v, %v (%d posts); want a duplicate of %s and no post", again, err, s.poster.count(), first.MessageID)
		}
	})
	t.Run("Complete", func(t *testing.T) {
		t.Parallel()
		// The fan-out happened: the caller hears of it, not of the
		// store's failure to remember it.
		s := newStreamStack(t, "orders", 2, time.Minute)
		s.faulty.fail("Complete")
		m := positioned("orders", "1")
		m.IdempotencyKey = "k-1"
		res, err := s.fanout.Publish(t.Context(), m)
		if err != nil || res.Delivered != 2 || res.Position.Offset != 1 {
			t.Fatalf("Publish = %+v, %v; want offset 1 delivered to 2", res, err)
		}
	})
}

// A repeated key answers the first publish's outcome and delivers
// nothing; the same key on another topic is another publish.
func TestPublishIdempotent(t *testing.T) {
	t.Parallel()
	s := newStreamStack(t, "orders", 2, time.Minute)
	m := positioned("orders", `"once"`)
	m.IdempotencyKey = "order-42 created"
	first, err := s.fanout.Publish(t.Context(), m)
	if err != nil || first.Duplicate || first.Delivered != 2 {
		t.Fatalf("first = %+v, %v", first, err)
	}
	again, err := s.fanout.Publish(t.Context(), m)
	want := fanout.Result{MessageID: first.MessageID, Position: first.Position, Duplicate: true}
	if err != nil || again != want {
		t.Fatalf("again = %+v, %v; want %+v", again, err, want)
	}
	if n := s.poster.count(); n != 2 {
		t.Errorf("%d posts, want 2 (the first publish's)", n)
	}
	// No offset was taken by the duplicate.
	if next, err := s.fanout.Publish(t.Context(), positioned("orders", "1")); err != nil || next.Position.Offset != 2 {
		t.Errorf("next publish = %+v, %v; want offset 2", next, err)
	}
	m.Topic = "other"
	if res, err := s.fanout.Publish(t.Context(), m); err != nil || res.Duplicate {
		t.Errorf("same key on another topic = %+v, %v; want a fresh publish", res, err)
	}
}

// Concurrent publishes with one key fan out once: the others wait for it
// and answer its outcome.
func TestPublishConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	const callers, conns = 32, 3
	s := newStreamStack(t, "orders", conns, time.Minute)
	s.poster.delay = 20 * time.Millisecond // the first is still posting when the others reserve
	m := positioned("orders", `"once"`)
	m.IdempotencyKey = "same"
	results := make(chan fanout.Result, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			res, err := s.fanout.Publish(t.Context(), m)
			if err != nil {
				t.Error(err)
			}
			results <- res
		})
	}
	wg.Wait()
	close(results)
	var fresh []fanout.Result
	ids := map[string]bool{}
	for r := range results {
		ids[fmt.Sprint(r.MessageID, r.Position)] = true
		if !r.Duplicate {
			fresh = append(fresh, r)
		} else if r.Delivered+r.Gone+r.Failed != 0 {
			t.Errorf("duplicate %+v has counts", r)
		}
	}
	if len(fresh) != 1 || fresh[0].Delivered != conns {
		t.Fatalf("%d fresh publishes (%+v), want exactly one delivered to %d", len(fresh), fresh, conns)
	}
	if len(ids) != 1 {
		t.Errorf("answers name %d different messages, want all the same: %v", len(ids), ids)
	}
	if n := s.poster.count(); n != conns {
		t.Errorf("%d posts, want %d: one fan-out", n, conns)
	}
}

// A publish whose deadline ends mid fan-out may have reached subscribers:
// its key stays taken, so a retry does not post it again.
func TestPublishDeadlineKeepsKey(t *testing.T) {
	t.Parallel()
	s := newStreamStack(t, "orders", 50, time.Minute)
	s.poster.delay = time.Second
	m := positioned("orders", "1")
	m.IdempotencyKey = "k"
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	first, err := s.fanout.Publish(ctx, m)
	if err != nil || first.Failed == 0 {
		t.Fatalf("first = %+v, %v; want some deliveries cut by the deadline", first, err)
	}
	s.poster.delay = 0
	again, err := s.fanout.Publish(t.Context(), m)
	if err != nil || !again.Duplicate || again.MessageID != first.MessageID {
		t.Fatalf("retry = %+v, %v; want a duplicate of %s", again, err, first.MessageID)
	}
	if n := s.poster.count(); n != 0 {
		t.Errorf("the retry posted %d", n)
	}
}

// A malformed key is refused before anything is stored or posted.
func TestPublishBadIdempotencyKey(t *testing.T) {
	t.Parallel()
	for name, key := range map[string]string{
		"129 characters": strings.Repeat("k", 129),
		"newline":        "a\nb",
		"tab":            "a\tb",
		"DEL":            "a\x7f",
		"non-ASCII":      "clé",
		"NUL":            "\x00",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newStreamStack(t, "orders", 1, time.Minute)
			m := positioned("orders", "1")
			m.IdempotencyKey = key
			_, err := s.fanout.Publish(t.Context(), m)
			if !errors.Is(err, fanout.ErrInvalid) || !strings.Contains(err.Error(), "idempotency key") {
				t.Fatalf("err = %v, want ErrInvalid about the idempotency key", err)
			}
			if n := s.poster.count(); n != 0 {
				t.Errorf("%d posts, want none", n)
			}
			if _, pos, _ := s.mem.History(t.Context(), "orders", 0, 1); pos.Offset != 0 {
				t.Errorf("the refused publish took offset %d", pos.Offset)
			}
		})
	}
	t.Run("128 printable characters", func(t *testing.T) {
		t.Parallel()
		s := newStreamStack(t, "orders", 1, time.Minute)
		m := positioned("orders", "1")
		m.IdempotencyKey = " ~" + strings.Repeat("K", 126)
		if res, err := s.fanout.Publish(t.Context(), m); err != nil || res.Delivered != 1 {
			t.Fatalf("Publish = %+v, %v; want it delivered", res, err)
		}
	})
}

// Without streams a key could not be remembered: refusing it beats a
// promise not kept.
func TestPublishKeyNeedsStreams(t *testing.T) {
	t.Parallel()
	poster := &recordingPoster{}
	f := fanout.New(newSubs("orders", 1), poster, fanout.Options{Logger: slog.New(slog.DiscardHandler)})
	m := positioned("orders", "1")
	m.IdempotencyKey = "k"
	if _, err := f.Publish(t.Context(), m); err == nil || poster.count() != 0 {
		t.Fatalf("err = %v with %d posts, want a refusal and none", err, poster.count())
	}
	// And without a key the message goes out, with no position.
	res, err := f.Publish(t.Context(), positioned("orders", "1"))
	if err != nil || res.Position != (store.Position{}) || strings.Contains(string(poster.of("conn-1000")[0]), "offset") {
		t.Fatalf("Publish = %+v, %v; frame %s; want delivered without a position", res, err, poster.of("conn-1000"))
	}
}
