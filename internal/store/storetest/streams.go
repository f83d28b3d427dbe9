package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/store"
)

// keep is the counters' keep in the suite: an hour, so that tests expire
// counters by moving the clock an hour.
const keep = time.Hour

// The streams keep what they keep for at least its duration, and at most
// a second more: DynamoDB's TTL counts whole seconds, and the window of an
// idempotency key must not be a fraction of a second short. The suite's
// clock starts between two seconds, so the tests look a nanosecond before
// a duration ends (still there) and a second after (gone).

// historyTTL is the retention the suite retains messages for.
const historyTTL = 5 * time.Minute

var streamTests = []struct {
	name string
	test func(t *testing.T, s store.Store, clock *fakeClock)
}{
	{"PositionsGrowByOne", testPositionsGrowByOne},
	{"PositionsOfNewTopic", testPositionsOfNewTopic},
	{"ExpiredCounterStartsNewEpoch", testExpiredCounterStartsNewEpoch},
	{"PositionsRefreshPastHalfKeep", testPositionsRefreshPastHalfKeep},
	{"History", testHistory},
	{"HistoryExpiryAndEpochs", testHistoryExpiryAndEpochs},
	{"Idempotency", testIdempotency},
	{"IdempotencyWindow", testIdempotencyWindow},
	{"ReserveWaitsForPending", testReserveWaitsForPending},
	{"StreamsBadInputStoresNothing", testStreamsBadInputStoresNothing},
	{"ConcurrentNextPosition", testConcurrentNextPosition},
	{"ConcurrentReserve", testConcurrentReserve},
	{"StreamsLeaveConnectionsAlone", testStreamsLeaveConnectionsAlone},
}

func next(t *testing.T, s store.Store, topic string) store.Position {
	t.Helper()
	pos, err := s.NextPosition(t.Context(), topic, keep)
	if err != nil {
		t.Fatalf("NextPosition(%q): %v", topic, err)
	}
	return pos
}

func positions(t *testing.T, s store.Store, topics ...string) map[string]store.Position {
	t.Helper()
	got, err := s.Positions(t.Context(), topics, keep)
	if err != nil {
		t.Fatalf("Positions(%q): %v", topics, err)
	}
	return got
}

// envelope is the suite's message frame for an offset.
func envelope(topic string, offset uint64) []byte {
	return fmt.Appendf(nil, `{"type":"message","topic":%q,"offset":%d}`, topic, offset)
}

// publish takes the next position and retains the message at it.
func publish(t *testing.T, s store.Store, topic string) store.Position {
	t.Helper()
	pos := next(t, s, topic)
	retain(t, s, topic, pos, historyTTL)
	return pos
}

func retain(t *testing.T, s store.Store, topic string, pos store.Position, ttl time.Duration) {
	t.Helper()
	m := store.Retained{Offset: pos.Offset, Envelope: envelope(topic, pos.Offset)}
	if err := s.Retain(t.Context(), topic, pos, m, ttl); err != nil {
		t.Fatalf("Retain(%q, %+v): %v", topic, pos, err)
	}
}

// wantHistory checks History's messages (by offset, each with its own
// envelope) and position.
func wantHistory(t *testing.T, s store.Store, topic string, since uint64, limit int, wantPos store.Position, want ...uint64) {
	t.Helper()
	msgs, pos, err := s.History(t.Context(), topic, since, limit)
	if err != nil {
		t.Fatalf("History(%q, %d, %d): %v", topic, since, limit, err)
	}
	got := make([]uint64, len(msgs))
	for i, m := range msgs {
		got[i] = m.Offset
		if e := envelope(topic, m.Offset); string(m.Envelope) != string(e) {
			t.Errorf("History(%q): offset %d has envelope %s, want %s", topic, m.Offset, m.Envelope, e)
		}
	}
	if !slices.Equal(got, want) || pos != wantPos {
		t.Errorf("History(%q, since %d, limit %d) = %v at %+v, want %v at %+v", topic, since, limit, got, pos, want, wantPos)
	}
}

func testPositionsGrowByOne(t *testing.T, s store.Store, _ *fakeClock) {
	first := next(t, s, "a")
	if first.Offset != 1 || first.Epoch == "" {
		t.Fatalf("first NextPosition(a) = %+v, want offset 1 of a non-empty epoch", first)
	}
	for want := uint64(2); want <= 5; want++ {
		if pos := next(t, s, "a"); pos != (store.Position{Epoch: first.Epoch, Offset: want}) {
			t.Fatalf("NextPosition(a) = %+v, want offset %d of epoch %q", pos, want, first.Epoch)
		}
	}
	// Topics count apart, a topic whose name extends another's included.
	for _, topic := range []string{"a.b", "b"} {
		if pos := next(t, s, topic); pos.Offset != 1 {
			t.Errorf("NextPosition(%q) = %+v, want offset 1: its own counter", topic, pos)
		}
	}
	if pos := next(t, s, "a"); pos.Offset != 6 {
		t.Errorf("NextPosition(a) after other topics = %+v, want offset 6", pos)
	}
}

func testPositionsOfNewTopic(t *testing.T, s store.Store, _ *fakeClock) {
	if got := positions(t, s); len(got) != 0 {
		t.Errorf("Positions(no topics) = %v, want none", got)
	}
	next(t, s, "old")
	next(t, s, "old")
	got := positions(t, s, "fresh", "old", "fresh")
	fresh, old := got["fresh"], got["old"]
	if len(got) != 2 || fresh.Offset != 0 || fresh.Epoch == "" || old.Offset != 2 || old.Epoch == "" {
		t.Fatalf("Positions(fresh, old) = %+v, want fresh at offset 0 of an epoch and old at 2", got)
	}
	// The first publish keeps the epoch the subscribe saw.
	if pos := next(t, s, "fresh"); pos != (store.Position{Epoch: fresh.Epoch, Offset: 1}) {
		t.Errorf("first NextPosition(fresh) = %+v, want offset 1 of the epoch Positions started (%q)", pos, fresh.Epoch)
	}
	if got := positions(t, s, "fresh"); got["fresh"] != (store.Position{Epoch: fresh.Epoch, Offset: 1}) {
		t.Errorf("Positions(fresh) after a publish = %+v, want offset 1 of %q", got, fresh.Epoch)
	}
	// History tells a topic with no counter (no epoch) from one at 0.
	wantHistory(t, s, "never", 0, 10, store.Position{})
	positions(t, s, "subscribed-only")
	msgs, pos, err := s.History(t.Context(), "subscribed-only", 0, 10)
	if err != nil || len(msgs) != 0 || pos.Offset != 0 || pos.Epoch == "" {
		t.Errorf("History(subscribed-only) = %v, %+v, %v; want no messages at offset 0 of an epoch", msgs, pos, err)
	}
}

func testExpiredCounterStartsNewEpoch(t *testing.T, s store.Store, clock *fakeClock) {
	next(t, s, "a")
	first := next(t, s, "a")
	// Each publish pushes the expiry out by keep.
	clock.Advance(keep - time.Second)
	if pos := next(t, s, "a"); pos != (store.Position{Epoch: first.Epoch, Offset: 3}) {
		t.Fatalf("NextPosition(a) a second before expiry = %+v, want offset 3 of %q", pos, first.Epoch)
	}
	clock.Advance(keep - time.Second)
	if got := positions(t, s, "a")["a"]; got != (store.Position{Epoch: first.Epoch, Offset: 3}) {
		t.Fatalf("Positions(a) a second before expiry = %+v, want offset 3 of %q", got, first.Epoch)
	}
	// Positions refreshed it too: a second after its own keep it is gone.
	clock.Advance(keep + time.Second)
	wantHistory(t, s, "a", 0, 10, store.Position{})
	restarted := next(t, s, "a")
	if restarted.Offset != 1 || restarted.Epoch == "" || restarted.Epoch == first.Epoch {
		t.Fatalf("NextPosition(a) after the counter expired = %+v, want offset 1 of a new epoch (not %q)", restarted, first.Epoch)
	}
	if pos := next(t, s, "a"); pos != (store.Position{Epoch: restarted.Epoch, Offset: 2}) {
		t.Errorf("NextPosition(a) in the new epoch = %+v, want offset 2 of %q", pos, restarted.Epoch)
	}

	// Positions restarts an expired counter at 0, and the next publish
	// keeps that epoch.
	next(t, s, "b")
	clock.Advance(keep + time.Second)
	got := positions(t, s, "b")["b"]
	if got.Offset != 0 || got.Epoch == "" {
		t.Fatalf("Positions(b) after expiry = %+v, want offset 0 of a new epoch", got)
	}
	if pos := next(t, s, "b"); pos != (store.Position{Epoch: got.Epoch, Offset: 1}) {
		t.Errorf("NextPosition(b) = %+v, want offset 1 of %q", pos, got.Epoch)
	}
}

// Positions writes a counter only when less than half of keep is left:
// a subscribe to a busy topic reads its position, and the publishes keep
// the counter alive. Either way the epoch it answers lasts at least keep/2.
func testPositionsRefreshPastHalfKeep(t *testing.T, s store.Store, clock *fakeClock) {
	// More than half left: returned as it is, not extended. The counter
	// expires with the publish's keep.
	pos := next(t, s, "a")
	clock.Advance(keep/2 - time.Second)
	if got := positions(t, s, "a")["a"]; got != pos {
		t.Fatalf("Positions(a) with more than half of keep left = %+v, want %+v", got, pos)
	}
	clock.Advance(keep/2 + 2*time.Second) // a second past the publish's keep
	wantHistory(t, s, "a", 0, 10, store.Position{})
	if got := positions(t, s, "a")["a"]; got.Offset != 0 || got.Epoch == "" || got.Epoch == pos.Epoch {
		t.Fatalf("Positions(a) after the publish's keep = %+v, want offset 0 of a new epoch (not %q): Positions with more than half left must not extend the counter", got, pos.Epoch)
	}

	// Less than half left: extended by keep from the call.
	pos = next(t, s, "b")
	clock.Advance(keep/2 + time.Second)
	if got := positions(t, s, "b")["b"]; got != pos {
		t.Fatalf("Positions(b) with less than half of keep left = %+v, want %+v", got, pos)
	}
	clock.Advance(keep - time.Second) // past the publish's keep, within the refresh's
	wantHistory(t, s, "b", 0, 10, pos)
	if got := next(t, s, "b"); got != (store.Position{Epoch: pos.Epoch, Offset: 2}) {
		t.Fatalf("NextPosition(b) within the keep of Positions' refresh = %+v, want offset 2 of %q", got, pos.Epoch)
	}

	// Whatever is left when Positions is called, its epoch lasts at least
	// keep/2 after the call: a topic of its own for each, its counter
	// started by a publish (or by Positions) d before the call.
	for i, d := range []time.Duration{0, time.Second, keep/2 - time.Second, keep / 2, keep/2 + time.Second, keep - time.Second} {
		for _, publish := range []bool{true, false} {
			topic := fmt.Sprintf("c%d-%t", i, publish)
			if publish {
				next(t, s, topic)
			} else {
				positions(t, s, topic)
			}
			clock.Advance(d)
			got := positions(t, s, topic)[topic]
			clock.Advance(keep/2 - time.Nanosecond)
			if _, pos, err := s.History(t.Context(), topic, 0, 10); err != nil || pos != got {
				t.Errorf("%s: History keep/2 after Positions (whose counter was started %v before it) = %+v, %v; want %+v, the epoch Positions answered", topic, d, pos, err, got)
			}
		}
	}
}

func testHistory(t *testing.T, s store.Store, _ *fakeClock) {
	var last store.Position
	var all []uint64
	for range 10 {
		last = next(t, s, "h")
		all = append(all, last.Offset)
	}
	// Retained out of order, as concurrent publishes may: History is
	// ordered by offset anyway.
	for _, off := range slices.Backward(all) {
		retain(t, s, "h", store.Position{Epoch: last.Epoch, Offset: off}, historyTTL)
	}
	wantHistory(t, s, "h", 0, 100, last, all...)
	wantHistory(t, s, "h", 3, 4, last, 4, 5, 6, 7)
	wantHistory(t, s, "h", 9, 4, last, 10)
	wantHistory(t, s, "h", 10, 4, last)
	wantHistory(t, s, "h", 1<<63, 4, last)
	wantHistory(t, s, "h", 0, 1, last, 1)
	// A topic whose name extends another's has its own history.
	wantHistory(t, s, "h.x", 0, 100, store.Position{})

	// Retention 0 (HISTORY_TTL=0) keeps nothing.
	none := next(t, s, "h")
	retain(t, s, "h", none, 0)
	wantHistory(t, s, "h", 9, 100, none, 10)

	// A message retained at an offset the counter has not reached yet is
	// not returned: History answers up to the position it read.
	ahead := store.Position{Epoch: none.Epoch, Offset: none.Offset + 1}
	retain(t, s, "h", ahead, historyTTL)
	wantHistory(t, s, "h", 9, 100, none, 10)
	next(t, s, "h")
	wantHistory(t, s, "h", 9, 100, ahead, 10, ahead.Offset)
}

func testHistoryExpiryAndEpochs(t *testing.T, s store.Store, clock *fakeClock) {
	for range 3 {
		publish(t, s, "h")
	}
	clock.Advance(2 * time.Minute)
	var last store.Position
	for range 3 {
		last = publish(t, s, "h")
	}
	clock.Advance(historyTTL - 2*time.Minute - time.Nanosecond)
	wantHistory(t, s, "h", 0, 100, last, 1, 2, 3, 4, 5, 6)
	clock.Advance(time.Second + time.Nanosecond) // the first three expire
	wantHistory(t, s, "h", 0, 100, last, 4, 5, 6)
	wantHistory(t, s, "h", 0, 2, last, 4, 5)

	// A message of another epoch at the next offset is not this epoch's.
	stale := next(t, s, "h")
	retain(t, s, "h", store.Position{Epoch: "not-" + stale.Epoch, Offset: stale.Offset}, historyTTL)
	wantHistory(t, s, "h", 0, 100, stale, 4, 5, 6)
	wantHistory(t, s, "h", 0, 3, stale, 4, 5, 6)

	// After the counter expires, the old epoch's messages are gone with it.
	clock.Advance(keep + time.Second)
	fresh := next(t, s, "h")
	wantHistory(t, s, "h", 0, 100, fresh)
	retain(t, s, "h", fresh, historyTTL)
	wantHistory(t, s, "h", 0, 100, fresh, 1)
}

func outcome(id string, offset uint64) store.Outcome {
	return store.Outcome{MessageID: id, Position: store.Position{Epoch: "e1", Offset: offset}}
}

func mustReserve(t *testing.T, s store.Store, topic, key string) {
	t.Helper()
	if o, err := s.Reserve(t.Context(), topic, key); err != nil {
		t.Fatalf("Reserve(%q, %q) = %+v, %v; want it free", topic, key, o, err)
	}
}

func mustComplete(t *testing.T, s store.Store, topic, key string, o store.Outcome) {
	t.Helper()
	if err := s.Complete(t.Context(), topic, key, o); err != nil {
		t.Fatalf("Complete(%q, %q): %v", topic, key, err)
	}
}

func wantDuplicate(t *testing.T, s store.Store, topic, key string, want store.Outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	o, err := s.Reserve(ctx, topic, key)
	if !errors.Is(err, store.ErrDuplicate) || o != want {
		t.Errorf("Reserve(%q, %q) = %+v, %v; want ErrDuplicate with %+v", topic, key, o, err, want)
	}
}

func testIdempotency(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	first := outcome("m1", 7)
	mustReserve(t, s, "a", "k")
	mustComplete(t, s, "a", "k", first)
	wantDuplicate(t, s, "a", "k", first)
	wantDuplicate(t, s, "a", "k", first)

	// Keys are per topic, and whole: '#' in topics or keys cannot make two
	// pairs one.
	mustReserve(t, s, "b", "k")
	mustReserve(t, s, "a", "k2")
	mustReserve(t, s, "x#y", "z")
	mustReserve(t, s, "x", "y#z")
	mustReserve(t, s, "a", " !~k with spaces ")

	// Releasing frees a pending key for a retry; a completed key stays.
	mustReserve(t, s, "a", "failed")
	if err := s.Release(ctx, "a", "failed"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	mustReserve(t, s, "a", "failed")
	if err := s.Release(ctx, "a", "k"); err != nil {
		t.Fatalf("Release of a completed key: %v", err)
	}
	wantDuplicate(t, s, "a", "k", first)
	for _, key := range []string{"never-reserved", "failed"} {
		if err := s.Release(ctx, "a", key); err != nil {
			t.Errorf("Release(%q) again: %v, want nil", key, err)
		}
	}
	mustReserve(t, s, "a", "never-reserved")
}

func testIdempotencyWindow(t *testing.T, s store.Store, clock *fakeClock) {
	mustReserve(t, s, "a", "k")
	clock.Advance(2 * time.Minute)
	o := outcome("m1", 1)
	mustComplete(t, s, "a", "k", o)
	// The window runs from the accepted publish, not the reservation.
	clock.Advance(store.IdempotencyWindow - time.Nanosecond)
	wantDuplicate(t, s, "a", "k", o)
	clock.Advance(time.Second + time.Nanosecond)
	mustReserve(t, s, "a", "k")

	// A reservation whose publish never finished (its process died) frees
	// the key once the window has passed.
	mustReserve(t, s, "a", "orphan")
	clock.Advance(store.IdempotencyWindow + time.Second)
	mustReserve(t, s, "a", "orphan")
}

// reserveAsync calls Reserve in a goroutine and delivers its result.
func reserveAsync(ctx context.Context, s store.Store, topic, key string) <-chan reserveResult {
	ch := make(chan reserveResult, 1)
	go func() {
		o, err := s.Reserve(ctx, topic, key)
		ch <- reserveResult{o, err}
	}()
	return ch
}

type reserveResult struct {
	o   store.Outcome
	err error
}

func testReserveWaitsForPending(t *testing.T, s store.Store, _ *fakeClock) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// A duplicate of a publish in flight waits for its outcome.
	mustReserve(t, s, "a", "completes")
	waiting := reserveAsync(ctx, s, "a", "completes")
	select {
	case r := <-waiting:
		t.Fatalf("Reserve of a pending key returned %+v, %v at once; want it to wait", r.o, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	o := outcome("m1", 1)
	mustComplete(t, s, "a", "completes", o)
	if r := <-waiting; !errors.Is(r.err, store.ErrDuplicate) || r.o != o {
		t.Errorf("waiting Reserve after Complete = %+v, %v; want ErrDuplicate with %+v", r.o, r.err, o)
	}

	// A publish that failed and released: the waiter takes the key.
	mustReserve(t, s, "a", "released")
	waiting = reserveAsync(ctx, s, "a", "released")
	time.Sleep(100 * time.Millisecond)
	if err := s.Release(ctx, "a", "released"); err != nil {
		t.Fatal(err)
	}
	if r := <-waiting; r.err != nil {
		t.Errorf("waiting Reserve after Release = %+v, %v; want the key", r.o, r.err)
	}
	wantPending(t, s, "a", "released")

	// Waiting ends with the caller's deadline.
	mustReserve(t, s, "a", "stuck")
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	_, err := s.Reserve(short, "a", "stuck")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reserve of a key pending past the deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Reserve returned %v after a 300ms deadline", d)
	}
}

// wantPending checks that key is held by a publish in flight: Reserve
// waits (here until a short deadline).
func wantPending(t *testing.T, s store.Store, topic, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if o, err := s.Reserve(ctx, topic, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reserve(%q, %q) = %+v, %v; want it pending (a wait until the deadline)", topic, key, o, err)
	}
}

func testStreamsBadInputStoresNothing(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	long := strings.Repeat("x", 600)
	pos := store.Position{Epoch: "e", Offset: 1}
	msg := store.Retained{Offset: 1, Envelope: envelope("a", 1)}
	many := make([]string, store.MaxPositionsTopics+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"NextPosition without topic", func() error { _, err := s.NextPosition(ctx, "", keep); return err }},
		{"NextPosition with a long topic", func() error { _, err := s.NextPosition(ctx, long, keep); return err }},
		{"NextPosition keeping 0", func() error { _, err := s.NextPosition(ctx, "a", 0); return err }},
		{"NextPosition keeping less than 0", func() error { _, err := s.NextPosition(ctx, "a", -time.Second); return err }},
		{"Retain without topic", func() error { return s.Retain(ctx, "", pos, msg, historyTTL) }},
		{"Retain without epoch", func() error { return s.Retain(ctx, "a", store.Position{Offset: 1}, msg, historyTTL) }},
		{"Retain at offset 0", func() error {
			return s.Retain(ctx, "a", pos, store.Retained{Envelope: msg.Envelope}, historyTTL)
		}},
		{"Retain at another offset than its position", func() error {
			return s.Retain(ctx, "a", store.Position{Epoch: "e", Offset: 2}, msg, historyTTL)
		}},
		{"Retain without envelope", func() error { return s.Retain(ctx, "a", pos, store.Retained{Offset: 1}, historyTTL) }},
		{"Retain for less than 0", func() error { return s.Retain(ctx, "a", pos, msg, -time.Second) }},
		{"Positions with an empty topic", func() error { _, err := s.Positions(ctx, []string{"a", ""}, keep); return err }},
		{"Positions with a long topic", func() error { _, err := s.Positions(ctx, []string{"a", long}, keep); return err }},
		{"Positions of too many topics", func() error { _, err := s.Positions(ctx, append(many, "a"), keep); return err }},
		{"Positions keeping 0", func() error { _, err := s.Positions(ctx, []string{"a"}, 0); return err }},
		{"History without topic", func() error { _, _, err := s.History(ctx, "", 0, 10); return err }},
		{"History with limit 0", func() error { _, _, err := s.History(ctx, "a", 0, 0); return err }},
		{"Reserve without topic", func() error { _, err := s.Reserve(ctx, "", "k"); return err }},
		{"Reserve without key", func() error { _, err := s.Reserve(ctx, "a", ""); return err }},
		{"Reserve with a long key", func() error { _, err := s.Reserve(ctx, "a", strings.Repeat("k", 129)); return err }},
		{"Reserve with a control character", func() error { _, err := s.Reserve(ctx, "a", "k\n"); return err }},
		{"Reserve with a non-ASCII key", func() error { _, err := s.Reserve(ctx, "a", "clé"); return err }},
		{"Complete without key", func() error { return s.Complete(ctx, "a", "", outcome("m", 1)) }},
		{"Complete without message id", func() error { return s.Complete(ctx, "a", "k", outcome("", 1)) }},
		// No position at all is a message outside any stream (a user's);
		// half of one is refused.
		{"Complete with half a position", func() error {
			return s.Complete(ctx, "a", "k", store.Outcome{MessageID: "m", Position: store.Position{Epoch: "e"}})
		}},
		{"Release without key", func() error { return s.Release(ctx, "a", "") }},
		{"Release without topic", func() error { return s.Release(ctx, "", "k") }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: error %v, want ErrInvalidArgument", c.name, err)
		}
	}
	// No counter, no message and no key was written.
	wantHistory(t, s, "a", 0, 10, store.Position{})
	wantHistory(t, s, "t0", 0, 10, store.Position{})
	mustReserve(t, s, "a", "k")
	// A key of exactly the longest length is fine.
	mustReserve(t, s, "a", strings.Repeat("k", store.MaxIdempotencyKeyLen))
	if got := positions(t, s, many[:store.MaxPositionsTopics]...); len(got) != store.MaxPositionsTopics {
		t.Errorf("Positions of %d topics returned %d", store.MaxPositionsTopics, len(got))
	}
}

func testConcurrentNextPosition(t *testing.T, s store.Store, _ *fakeClock) {
	// Eight publishers at once: the first calls race to start the counter's
	// epoch, and every later one races seven others for the next offset.
	// Each round repeats that race; 25 keep all eight publishing together
	// throughout, where more would only repeat it at an UpdateItem apiece
	// against DynamoDB.
	const workers, each = 8, 25
	got := make([][]store.Position, workers)
	errs := make([]error, workers)
	// taken is the highest offset a NextPosition has returned; published
	// is closed once one has.
	var taken atomic.Uint64
	published := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			defer once.Do(func() { close(published) }) // a publisher that failed at once
			for range each {
				pos, err := s.NextPosition(t.Context(), "hot", keep)
				if err != nil {
					errs[w] = err
					return
				}
				got[w] = append(got[w], pos)
				for {
					old := taken.Load()
					if old >= pos.Offset || taken.CompareAndSwap(old, pos.Offset) {
						break
					}
				}
				once.Do(func() { close(published) })
			}
		})
	}
	// Subscribes read the position meanwhile, which must not disturb it:
	// one races the publishers to start the counter, the others find it
	// live and fresh (the clock stands still), which the DynamoDB store
	// answers from a read. Each sees at least every offset taken before
	// it began.
	var seen []store.Position
	wg.Go(func() {
		for i := range 20 {
			if i == 1 {
				<-published
			}
			floor := taken.Load()
			got, err := s.Positions(t.Context(), []string{"hot"}, keep)
			if err != nil {
				t.Errorf("Positions during the publishes: %v", err)
				return
			}
			if pos := got["hot"]; pos.Offset < floor {
				t.Errorf("Positions during the publishes = %+v, below offset %d taken before it began", pos, floor)
			}
			seen = append(seen, got["hot"])
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	all := slices.Concat(got...)
	wantGapless(t, all, workers*each)
	for _, pos := range seen {
		if pos.Epoch != all[0].Epoch || pos.Offset > workers*each {
			t.Errorf("Positions during the publishes = %+v, want an offset of epoch %q up to %d", pos, all[0].Epoch, workers*each)
		}
	}
	if got := positions(t, s, "hot")["hot"]; got != (store.Position{Epoch: all[0].Epoch, Offset: workers * each}) {
		t.Errorf("Positions after the publishes = %+v, want offset %d of %q", got, workers*each, all[0].Epoch)
	}
}

// WantGapless checks that positions are offsets 1 to n, each exactly once,
// all of one epoch.
func WantGapless(t *testing.T, got []store.Position, n int) {
	t.Helper()
	wantGapless(t, got, n)
}

func wantGapless(t *testing.T, got []store.Position, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d positions, want %d", len(got), n)
	}
	seen := make([]int, n+1)
	for _, pos := range got {
		if pos.Epoch != got[0].Epoch {
			t.Fatalf("epochs %q and %q in one run", got[0].Epoch, pos.Epoch)
		}
		if pos.Offset < 1 || pos.Offset > uint64(n) {
			t.Fatalf("offset %d outside 1..%d", pos.Offset, n)
		}
		seen[pos.Offset]++
	}
	for off, times := range seen[1:] {
		if times != 1 {
			t.Errorf("offset %d given %d times, want once", off+1, times)
		}
	}
}

func testConcurrentReserve(t *testing.T, s store.Store, _ *fakeClock) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	WantOneReserveWins(ctx, t, []store.Store{s}, 16)
}

// WantOneReserveWins races n Reserves of one key over stores (in turn),
// completes the one that wins, and checks that exactly one won and every
// other answered ErrDuplicate with its outcome.
func WantOneReserveWins(ctx context.Context, t *testing.T, stores []store.Store, n int) {
	t.Helper()
	won := outcome("winner", 42)
	results := make([]error, n)
	outcomes := make([]store.Outcome, n)
	var winners sync.Mutex
	wins := 0
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		s := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			o, err := s.Reserve(ctx, "race", "key")
			if err == nil {
				winners.Lock()
				wins++
				winners.Unlock()
				// The winner publishes for a while: the others wait.
				time.Sleep(100 * time.Millisecond)
				err = s.Complete(ctx, "race", "key", won)
				o = won
			}
			results[i], outcomes[i] = err, o
		})
	}
	close(start)
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d of %d concurrent Reserves won, want exactly 1", wins, n)
	}
	for i, err := range results {
		if err != nil && (!errors.Is(err, store.ErrDuplicate) || outcomes[i] != won) {
			t.Errorf("Reserve %d: %+v, %v; want ErrDuplicate with the winner's %+v", i, outcomes[i], err, won)
		}
	}
}

func testStreamsLeaveConnectionsAlone(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	// Topics named like the connection, its key and the streams' own
	// prefixes: none may turn up as a subscription or be deleted with it.
	topics := []string{"c1", "conn#c1", "pos#a", "hist#a", "idem#a", "a"}
	if err := s.PutConnection(ctx, store.Connection{ID: "c1", ConnectedAt: t0}); err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, s, "c1", "a")
	for _, topic := range topics {
		publish(t, s, topic)
		mustReserve(t, s, topic, "conn#c1")
		mustComplete(t, s, topic, "conn#c1", outcome("m-"+topic, 1))
	}
	positions(t, s, topics...)

	wantSubscribers(t, s, "a", "c1")
	for _, topic := range topics[:5] {
		wantSubscribers(t, s, topic /* none */)
	}
	wantTopics(t, s, "c1", "a")

	if err := s.DeleteConnection(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	wantTopics(t, s, "c1" /* none */)
	wantSubscribers(t, s, "a" /* none */)
	// The streams outlive the connection.
	for _, topic := range topics {
		msgs, pos, err := s.History(ctx, topic, 0, 10)
		if err != nil || len(msgs) != 1 || pos.Offset != 1 {
			t.Errorf("History(%q) after DeleteConnection = %d messages at %+v, %v; want its message", topic, len(msgs), pos, err)
		}
		wantDuplicate(t, s, topic, "conn#c1", outcome("m-"+topic, 1))
	}
}
