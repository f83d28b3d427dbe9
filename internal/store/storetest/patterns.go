package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/wsgateway/wsgateway/internal/store"
)

// A pattern ("a.*", "*") is subscribed to like a topic: its subscribers are
// its own partition (topic#a.*), which the fan-out reads beside the
// partitions of the topic and of the topic's other patterns. It never has
// a stream.

var patternTests = []struct {
	name string
	test func(t *testing.T, s store.Store, clock *fakeClock)
}{
	{"PatternSubscriptions", testPatternSubscriptions},
	{"PatternPaging", testPatternPaging},
	{"PatternHasNoStream", testPatternHasNoStream},
	{"ConcurrentPatternSubscribes", testConcurrentPatternSubscribes},
}

func testPatternSubscriptions(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	mustSubscribeAs(t, s, "c1", "u1", "a.b.c", "a.*", "*")
	mustSubscribeAs(t, s, "c2", "u1", "a.b.*")
	mustSubscribeAs(t, s, "c3", "u2", "a.*")

	// Each pattern has exactly its own subscribers: a pattern's partition
	// is not its topics', nor another pattern's.
	wantSubscribers(t, s, "a.b.c", "c1")
	wantSubscribers(t, s, "a.*", "c1", "c3")
	wantSubscribers(t, s, "a.b.*", "c2")
	wantSubscribers(t, s, "*", "c1")
	wantSubscribers(t, s, "a" /* none */)
	wantCount(t, s, "a.*", 2, 2)
	wantCount(t, s, "*", 1, 1)
	wantCount(t, s, "a.b.*", 1, 1)
	wantTopics(t, s, "c1", "*", "a.*", "a.b.c")

	// Unsubscribing a pattern drops that pattern alone.
	if err := s.Unsubscribe(ctx, "c1", []string{"a.*"}); err != nil {
		t.Fatal(err)
	}
	wantSubscribers(t, s, "a.*", "c3")
	wantSubscribers(t, s, "*", "c1")
	wantTopics(t, s, "c1", "*", "a.b.c")

	// A closed connection takes its patterns with it.
	if err := s.DeleteConnection(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	wantSubscribers(t, s, "*" /* none */)
	wantSubscribers(t, s, "a.b.c" /* none */)
	wantCount(t, s, "*", 0, 0)
	wantTopics(t, s, "c1" /* none */)
}

// A pattern's subscribers page as a topic's do, and a page token of a
// pattern is good for that pattern only.
func testPatternPaging(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("c%02d", i)
		want = append(want, id)
		mustSubscribe(t, s, id, "*", "a.*")
	}
	if got := ids(all(t, s, "*", 3)); !slices.Equal(got, want) {
		t.Errorf("Subscribers(*) by 3 = %q, want %q", got, want)
	}
	page, err := s.Subscribers(ctx, "*", 3, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribers(ctx, "a.*", 3, page.NextToken); !errors.Is(err, store.ErrInvalidPageToken) {
		t.Errorf("Subscribers(a.*) with a token of * = %v, want ErrInvalidPageToken", err)
	}
}

// Patterns are never published to, so no call may give one a counter or a
// history: each is refused, and the topic of the same prefix is untouched.
func testPatternHasNoStream(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	mustSubscribe(t, s, "c1", "a.*", "*")
	pos := store.Position{Epoch: "e", Offset: 1}
	msg := store.Retained{Offset: 1, Envelope: envelope("a.b", 1)}
	for _, p := range []string{"a.*", "*"} {
		calls := map[string]func() error{
			"NextPosition": func() error { _, err := s.NextPosition(ctx, p, keep); return err },
			"Positions":    func() error { _, err := s.Positions(ctx, []string{"a", p}, keep); return err },
			"Retain":       func() error { return s.Retain(ctx, p, pos, msg, historyTTL) },
			"History":      func() error { _, _, err := s.History(ctx, p, 0, 10); return err },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, store.ErrInvalidArgument) {
				t.Errorf("%s(%q) = %v, want ErrInvalidArgument", name, p, err)
			}
		}
	}
	// Positions refused the whole call: "a" got no counter either.
	wantHistory(t, s, "a", 0, 10, store.Position{})
	wantSubscribers(t, s, "a.*", "c1")
}

// Pattern subscriptions of many connections at once, and churn on them,
// leave each pattern's partition holding exactly who is subscribed.
func testConcurrentPatternSubscribes(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%02d", i)
			if err := s.Subscribe(ctx, id, "", []string{"*", "a.*", "a.b"}); err != nil {
				errs <- err
				return
			}
			if i%2 == 1 {
				errs <- s.Unsubscribe(ctx, id, []string{"a.*"})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var every, even []string
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		every = append(every, id)
		if i%2 == 0 {
			even = append(even, id)
		}
	}
	wantSubscribers(t, s, "*", every...)
	wantSubscribers(t, s, "a.b", every...)
	wantSubscribers(t, s, "a.*", even...)
	wantCount(t, s, "a.*", len(even), 0)
}
