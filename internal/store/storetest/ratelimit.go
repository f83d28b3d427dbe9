package storetest

import (
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/store"
)

// rateTests cover the per-connection publish rate limit (TakeToken) and
// the publish grant kept on the connection (PublishTopics).
var rateTests = []struct {
	name string
	test func(t *testing.T, s store.Store, clock *fakeClock)
}{
	{"PublishTopicsRoundTrip", testPublishTopicsRoundTrip},
	{"RateBurstThenRefusal", testRateBurstThenRefusal},
	{"RateRefillsOverTime", testRateRefillsOverTime},
	{"RateConcurrentTakesNeverExceedTheBucket", testRateConcurrent},
	{"RateRemovedWithTheConnection", testRateRemovedWithTheConnection},
	{"RateBadInput", testRateBadInput},
}

func limiter(t *testing.T, s store.Store) store.RateLimiter {
	t.Helper()
	r, ok := s.(store.RateLimiter)
	if !ok {
		t.Fatalf("%T does not keep rate limits (store.RateLimiter)", s)
	}
	return r
}

// take takes n tokens and returns how many were granted.
func take(t *testing.T, r store.RateLimiter, id string, limit store.RateLimit, n int) int {
	t.Helper()
	granted := 0
	for range n {
		ok, err := r.TakeToken(t.Context(), id, limit)
		if err != nil {
			t.Fatalf("TakeToken(%q): %v", id, err)
		}
		if ok {
			granted++
		}
	}
	return granted
}

func testPublishTopicsRoundTrip(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	conns := []store.Connection{
		{ID: "any", ConnectedAt: t0, PublishTopics: nil},
		{ID: "none", ConnectedAt: t0, PublishTopics: []string{}},
		{ID: "some", ConnectedAt: t0, Subject: "u", AllowedTopics: []string{"chat.*"}, PublishTopics: []string{"chat.*", "news"}},
	}
	for _, c := range conns {
		if err := s.PutConnection(ctx, c); err != nil {
			t.Fatalf("PutConnection(%q): %v", c.ID, err)
		}
	}
	for _, want := range conns {
		got, err := s.GetConnection(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetConnection(%q): %v", want.ID, err)
		}
		// DeepEqual tells nil (any topic) from empty (none).
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetConnection(%q) =\n%#v\nwant\n%#v", want.ID, got, want)
		}
	}
	// The store keeps its own copy: the caller's slice is not aliased.
	c := store.Connection{ID: "copied", PublishTopics: []string{"a"}}
	if err := s.PutConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.PublishTopics[0] = "b"
	if got, _ := s.GetConnection(ctx, "copied"); !reflect.DeepEqual(got.PublishTopics, []string{"a"}) {
		t.Errorf("PublishTopics after the caller changed its slice = %q, want [a]", got.PublishTopics)
	}
}

func testRateBurstThenRefusal(t *testing.T, s store.Store, _ *fakeClock) {
	r := limiter(t, s)
	limit := store.RateLimit{Rate: 1, Burst: 5}
	if got := take(t, r, "c1", limit, 8); got != 5 {
		t.Errorf("8 takes from a full bucket of 5 at a stopped clock: %d granted, want 5", got)
	}
	// Buckets are per connection.
	if got := take(t, r, "c2", limit, 5); got != 5 {
		t.Errorf("another connection's bucket: %d of 5 granted, want all", got)
	}
}

func testRateRefillsOverTime(t *testing.T, s store.Store, clock *fakeClock) {
	r := limiter(t, s)
	limit := store.RateLimit{Rate: 10, Burst: 3}
	if got := take(t, r, "c1", limit, 3); got != 3 {
		t.Fatalf("burst: %d granted, want 3", got)
	}
	clock.Advance(50 * time.Millisecond) // half a token
	if got := take(t, r, "c1", limit, 1); got != 0 {
		t.Errorf("after half a token's time: %d granted, want 0", got)
	}
	clock.Advance(150 * time.Millisecond) // two tokens in all since the burst
	if got := take(t, r, "c1", limit, 3); got != 2 {
		t.Errorf("after 200ms at 10/s: %d granted, want 2", got)
	}
	clock.Advance(time.Hour) // refills to the burst, never beyond
	if got := take(t, r, "c1", limit, 5); got != 3 {
		t.Errorf("after an hour: %d granted, want the burst of 3", got)
	}
}

// 16 goroutines, each trying to take many tokens at a stopped clock, get
// exactly the bucket between them: the optimistic write never lets two
// calls spend the same token.
func testRateConcurrent(t *testing.T, s store.Store, _ *fakeClock) {
	r := limiter(t, s)
	const workers, each, burst = 16, 4, 20
	limit := store.RateLimit{Rate: 1, Burst: burst}
	var granted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				ok, err := r.TakeToken(t.Context(), "c1", limit)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("TakeToken: %v", err)
	}
	if got := granted.Load(); got != burst {
		t.Errorf("%d concurrent takes from a bucket of %d: %d granted, want exactly %d", workers*each, burst, got, burst)
	}
}

// The bucket goes with its connection: a connection deleted and its id
// used again starts full. It is nothing else's item meanwhile: the
// connection's topics and its user's connections do not see it.
func testRateRemovedWithTheConnection(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	r := limiter(t, s)
	limit := store.RateLimit{Rate: 1, Burst: 2}
	if err := s.PutConnection(ctx, store.Connection{ID: "c1", Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, "c1", "alice", []string{"chat.r1"}); err != nil {
		t.Fatal(err)
	}
	if got := take(t, r, "c1", limit, 3); got != 2 {
		t.Fatalf("burst: %d granted, want 2", got)
	}
	if topics, err := s.Topics(ctx, "c1"); err != nil || !reflect.DeepEqual(topics, []string{"chat.r1"}) {
		t.Errorf("Topics(c1) with a rate bucket = %q, %v; want [chat.r1]", topics, err)
	}
	if page, err := s.UserConnections(ctx, "alice", 10, ""); err != nil || !reflect.DeepEqual(page.ConnectionIDs, []string{"c1"}) {
		t.Errorf("UserConnections(alice) with a rate bucket = %+v, %v; want [c1]", page, err)
	}
	if page, err := s.Subscribers(ctx, "chat.r1", 10, ""); err != nil || len(page.Subscriptions) != 1 {
		t.Errorf("Subscribers(chat.r1) with a rate bucket = %+v, %v; want c1 alone", page, err)
	}
	if err := s.DeleteConnection(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if got := take(t, r, "c1", limit, 3); got != 2 {
		t.Errorf("after DeleteConnection: %d granted, want a full bucket of 2", got)
	}
	if topics, err := s.Topics(ctx, "c1"); err != nil || len(topics) != 0 {
		t.Errorf("Topics(c1) after DeleteConnection = %q, %v; want none", topics, err)
	}
}

func testRateBadInput(t *testing.T, s store.Store, _ *fakeClock) {
	r := limiter(t, s)
	for _, tc := range []struct {
		id    string
		limit store.RateLimit
	}{
		{"", store.RateLimit{Rate: 1, Burst: 1}},
		{"c1", store.RateLimit{Rate: 0, Burst: 1}},
		{"c1", store.RateLimit{Rate: 1, Burst: 0}},
		{"c1", store.RateLimit{Rate: -1, Burst: 5}},
	} {
		if ok, err := r.TakeToken(t.Context(), tc.id, tc.limit); ok || !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("TakeToken(%q, %+v) = %v, %v; want ErrInvalidArgument", tc.id, tc.limit, ok, err)
		}
	}
	// Nothing was written: a valid take finds a full bucket.
	if got := take(t, r, "c1", store.RateLimit{Rate: 1, Burst: 1}, 2); got != 1 {
		t.Errorf("after refused calls: %d granted, want the full bucket of 1", got)
	}
}
