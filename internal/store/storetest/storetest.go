// Package storetest is the conformance suite every store.Store passes: the
// in-memory store and the DynamoDB store (against dynalite) run the same
// tests, so the devstack behaves like AWS.
package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/store"
)

// t0 is the suite's starting time. It carries nanoseconds so that a store
// which rounds timestamps fails.
var t0 = time.Date(2030, time.March, 4, 5, 6, 7, 123456789, time.UTC)

// ttl is how long after a write an item stays visible.
const ttl = store.MaxConnectionLifetime + store.TTLSlack

// fakeClock is a settable time source, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// NewStore returns an empty store that reads time from now. Each call must
// return a store that shares no data with the others.
type NewStore func(t *testing.T, now func() time.Time) store.Store

// Run runs the conformance suite against the stores newStore returns. Every
// subtest gets a fresh store and clock (starting at t0) and runs in
// parallel.
func Run(t *testing.T, newStore NewStore) {
	fresh := func(t *testing.T) (store.Store, *fakeClock) {
		t.Helper()
		clock := &fakeClock{now: t0}
		return newStore(t, clock.Now), clock
	}
	tests := []struct {
		name string
		test func(t *testing.T, s store.Store, clock *fakeClock)
	}{
		{"PutGetConnection", testPutGetConnection},
		{"GetUnknownConnection", testGetUnknownConnection},
		{"SubscribeIsIdempotent", testSubscribeIsIdempotent},
		{"Unsubscribe", testUnsubscribe},
		{"OverlappingTopics", testOverlappingTopics},
		{"SubscribersPaging", testSubscribersPaging},
		{"PagingSkipsExpired", testPagingSkipsExpired},
		{"Expiry", testExpiry},
		{"DeleteConnection", testDeleteConnection},
		{"InvalidPageToken", testInvalidPageToken},
		{"BadInputStoresNothing", testBadInputStoresNothing},
		{"ConcurrentSubscribes", testConcurrentSubscribes},
		{"Ping", testPing},
	}
	tests = append(tests, streamTests...)
	tests = append(tests, userTests...)
	tests = append(tests, rateTests...)
	tests = append(tests, patternTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := fresh(t)
			tt.test(t, s, clock)
		})
	}
}

func testPutGetConnection(t *testing.T, s store.Store, clock *fakeClock) {
	ctx := t.Context()
	conns := []store.Connection{
		{
			ID:            "full",
			ConnectedAt:   t0.Add(-time.Second),
			Subject:       "user-1",
			SourceIP:      "203.0.113.7",
			UserAgent:     "Mozilla/5.0 (X11; Linux x86_64)",
			AllowedTopics: []string{"orders.*", "news"},
		},
		{ID: "any-topic", ConnectedAt: t0, AllowedTopics: nil},
		{ID: "no-topic", ConnectedAt: t0, AllowedTopics: []string{}},
		{ID: "bare"},
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
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetConnection(%q) =\n%#v\nwant\n%#v", want.ID, got, want)
		}
	}

	// A connection's time in another zone is the same instant.
	zoned := store.Connection{ID: "zoned", ConnectedAt: t0.In(time.FixedZone("UTC+2", 2*60*60))}
	if err := s.PutConnection(ctx, zoned); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetConnection(ctx, zoned.ID); err != nil || !got.ConnectedAt.Equal(t0) {
		t.Errorf("GetConnection(zoned) = %v, %v; want ConnectedAt %v", got.ConnectedAt, err, t0)
	}

	// Putting again replaces the record.
	replaced := conns[0]
	replaced.UserAgent = "curl/8"
	replaced.AllowedTopics = nil
	clock.Advance(time.Minute)
	if err := s.PutConnection(ctx, replaced); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetConnection(ctx, replaced.ID); err != nil || !reflect.DeepEqual(got, replaced) {
		t.Errorf("after replacing: GetConnection = %#v, %v; want %#v", got, err, replaced)
	}
}

func testGetUnknownConnection(t *testing.T, s store.Store, _ *fakeClock) {
	_, err := s.GetConnection(t.Context(), "never-connected")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetConnection(unknown) error = %v, want ErrNotFound", err)
	}
}

func testSubscribeIsIdempotent(t *testing.T, s store.Store, clock *fakeClock) {
	ctx := t.Context()
	mustSubscribe(t, s, "c1", "a", "b", "a")
	clock.Advance(time.Minute)
	mustSubscribe(t, s, "c1", "b", "c")

	wantTopics(t, s, "c1", "a", "b", "c")
	for topic, at := range map[string]time.Time{"a": t0, "b": t0, "c": t0.Add(time.Minute)} {
		subs := all(t, s, topic, 10)
		want := []store.Subscription{{ConnectionID: "c1", Topic: topic, SubscribedAt: at}}
		if !equalSubs(subs, want) {
			t.Errorf("Subscribers(%q) = %v, want %v (the first SubscribedAt is kept)", topic, subs, want)
		}
	}

	if err := s.Subscribe(ctx, "c1", "", nil); err != nil {
		t.Errorf("Subscribe(no topics) = %v, want nil", err)
	}
	wantTopics(t, s, "c1", "a", "b", "c")
}

func testUnsubscribe(t *testing.T, s store.Store, clock *fakeClock) {
	ctx := t.Context()
	mustSubscribe(t, s, "c1", "a", "b", "c")
	mustSubscribe(t, s, "c2", "a")

	if err := s.Unsubscribe(ctx, "c1", []string{"a", "never-subscribed"}); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	wantTopics(t, s, "c1", "b", "c")
	wantSubscribers(t, s, "a", "c2")

	for _, again := range []struct {
		conn   string
		topics []string
	}{{"c1", []string{"a"}}, {"never-connected", []string{"a"}}, {"c1", nil}} {
		if err := s.Unsubscribe(ctx, again.conn, again.topics); err != nil {
			t.Errorf("Unsubscribe(%q, %q) = %v, want nil", again.conn, again.topics, err)
		}
	}
	wantTopics(t, s, "c1", "b", "c")

	// Subscribing after unsubscribing is a new subscription.
	clock.Advance(time.Minute)
	mustSubscribe(t, s, "c1", "a")
	subs := all(t, s, "a", 10)
	if len(subs) != 2 || !subs[0].SubscribedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("Subscribers(a) after resubscribing = %v, want c1 at %v first", subs, t0.Add(time.Minute))
	}
}

func testOverlappingTopics(t *testing.T, s store.Store, _ *fakeClock) {
	// "p" is a prefix of the other names: keys must match whole topics.
	mustSubscribe(t, s, "c1", "p", "p.q")
	mustSubscribe(t, s, "c2", "p.q", "p.q.r")
	mustSubscribe(t, s, "c", "p.q.r") // a prefix of the other connection ids

	wantSubscribers(t, s, "p", "c1")
	wantSubscribers(t, s, "p.q", "c1", "c2")
	wantSubscribers(t, s, "p.q.r", "c", "c2")
	wantSubscribers(t, s, "p." /* none */)
	wantTopics(t, s, "c1", "p", "p.q")
	wantTopics(t, s, "c2", "p.q", "p.q.r")
	wantTopics(t, s, "c", "p.q.r")
}

func testSubscribersPaging(t *testing.T, s store.Store, _ *fakeClock) {
	const n = 250
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("conn-%03d", i)
	}
	// Subscribe in random order: the listing is ordered by id anyway.
	for _, id := range shuffled(want) {
		mustSubscribe(t, s, id, "paged")
	}
	mustSubscribe(t, s, "conn-other", "unpaged")

	for _, limit := range []int{1, 7, 50, 100, n, 1000} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			t.Parallel()
			subs := all(t, s, "paged", limit)
			if got := ids(subs); !slices.Equal(got, want) {
				t.Fatalf("paging by %d returned %d ids, want %d in order; first difference at %d",
					limit, len(got), n, firstDiff(got, want))
			}
			for _, sub := range subs {
				if sub.Topic != "paged" || !sub.SubscribedAt.Equal(t0) {
					t.Fatalf("subscription %+v, want topic paged at %v", sub, t0)
				}
			}
		})
	}
}

func testPagingSkipsExpired(t *testing.T, s store.Store, clock *fakeClock) {
	// Odd connections subscribe first and expire first; the last id is odd,
	// so the listing ends with an expired subscription.
	odd, even := oddAndEvenIDs(40)
	for _, id := range odd {
		mustSubscribe(t, s, id, "mixed")
	}
	clock.Advance(time.Hour)
	for _, id := range even {
		mustSubscribe(t, s, id, "mixed")
	}
	clock.Advance(ttl - time.Hour) // the odd ones expire now

	for _, limit := range []int{1, 3, 4, 100} {
		// all checks that every page but the last is full and that no
		// empty page comes after the last live subscription.
		if got := ids(all(t, s, "mixed", limit)); !slices.Equal(got, even) {
			t.Errorf("paging by %d = %v, want only the live %v", limit, got, even)
		}
	}
}

func testExpiry(t *testing.T, s store.Store, clock *fakeClock) {
	ctx := t.Context()
	conn := store.Connection{ID: "c1", ConnectedAt: t0}
	if err := s.PutConnection(ctx, conn); err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, s, "c1", "a", "b")

	clock.Advance(ttl - time.Second)
	if _, err := s.GetConnection(ctx, "c1"); err != nil {
		t.Fatalf("GetConnection a second before expiry: %v", err)
	}
	wantTopics(t, s, "c1", "a", "b")
	wantSubscribers(t, s, "a", "c1")

	clock.Advance(time.Second)
	if _, err := s.GetConnection(ctx, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetConnection after expiry: error %v, want ErrNotFound", err)
	}
	wantTopics(t, s, "c1" /* none */)
	wantSubscribers(t, s, "a" /* none */)
	wantSubscribers(t, s, "b" /* none */)

	// Subscribing over an expired subscription starts a new one.
	mustSubscribe(t, s, "c1", "a")
	subs := all(t, s, "a", 10)
	if len(subs) != 1 || !subs[0].SubscribedAt.Equal(t0.Add(ttl)) {
		t.Errorf("Subscribers(a) after resubscribing = %v, want c1 at %v", subs, t0.Add(ttl))
	}
	wantTopics(t, s, "c1", "a")

	// So does putting the connection again.
	if err := s.PutConnection(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetConnection(ctx, "c1"); err != nil {
		t.Errorf("GetConnection after putting again: %v", err)
	}
}

func testDeleteConnection(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	// More topics than one DynamoDB batch (25) holds.
	topics := make([]string, 30)
	for i := range topics {
		topics[i] = fmt.Sprintf("t%02d", i)
	}
	for _, id := range []string{"doomed", "survivor"} {
		if err := s.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	mustSubscribe(t, s, "doomed", topics...)
	mustSubscribe(t, s, "survivor", topics[:3]...)

	if err := s.DeleteConnection(ctx, "doomed"); err != nil {
		t.Fatalf("DeleteConnection: %v", err)
	}
	if _, err := s.GetConnection(ctx, "doomed"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetConnection(deleted) error = %v, want ErrNotFound", err)
	}
	wantTopics(t, s, "doomed" /* none */)
	for i, topic := range topics {
		if i < 3 {
			wantSubscribers(t, s, topic, "survivor")
		} else {
			wantSubscribers(t, s, topic /* none */)
		}
	}
	if _, err := s.GetConnection(ctx, "survivor"); err != nil {
		t.Errorf("GetConnection(survivor): %v", err)
	}
	wantTopics(t, s, "survivor", topics[:3]...)

	for _, id := range []string{"doomed", "never-connected"} {
		if err := s.DeleteConnection(ctx, id); err != nil {
			t.Errorf("DeleteConnection(%q) again = %v, want nil", id, err)
		}
	}
}

func testInvalidPageToken(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	mustSubscribe(t, s, "c1", "a", "b")
	mustSubscribe(t, s, "c2", "a", "b")
	first, err := s.Subscribers(ctx, "a", 1, "")
	if err != nil || first.NextToken == "" {
		t.Fatalf("Subscribers(a, 1) = %+v, %v; want a next page", first, err)
	}
	if next, err := s.Subscribers(ctx, "a", 1, first.NextToken); err != nil || !slices.Equal(ids(next.Subscriptions), []string{"c2"}) {
		t.Fatalf("second page = %+v, %v; want c2", next, err)
	}

	for name, token := range map[string]string{
		"not base64":      "%%%",
		"not JSON":        "bm90IGpzb24",
		"empty JSON":      "e30",
		"other topic's":   first.NextToken, // issued for "a"
		"truncated":       first.NextToken[:len(first.NextToken)/2],
		"padded base64":   first.NextToken + "==",
		"whitespace only": " ",
	} {
		page, err := s.Subscribers(ctx, "b", 10, token)
		if !errors.Is(err, store.ErrInvalidPageToken) {
			t.Errorf("%s token %q: Subscribers = %+v, %v; want ErrInvalidPageToken", name, token, page, err)
		}
	}
}

func testBadInputStoresNothing(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	long := strings.Repeat("x", 600)
	calls := []struct {
		name string
		call func() error
	}{
		{"PutConnection without id", func() error { return s.PutConnection(ctx, store.Connection{ConnectedAt: t0}) }},
		{"PutConnection with a long id", func() error { return s.PutConnection(ctx, store.Connection{ID: long}) }},
		{"GetConnection without id", func() error { _, err := s.GetConnection(ctx, ""); return err }},
		{"DeleteConnection without id", func() error { return s.DeleteConnection(ctx, "") }},
		{"Subscribe without connection id", func() error { return s.Subscribe(ctx, "", "", []string{"a"}) }},
		{"Subscribe with an empty topic", func() error { return s.Subscribe(ctx, "c1", "", []string{"a", ""}) }},
		{"Subscribe with a long topic", func() error { return s.Subscribe(ctx, "c1", "", []string{"a", long}) }},
		{"Unsubscribe without connection id", func() error { return s.Unsubscribe(ctx, "", []string{"a"}) }},
		{"Unsubscribe with an empty topic", func() error { return s.Unsubscribe(ctx, "c1", []string{""}) }},
		{"Subscribers without topic", func() error { _, err := s.Subscribers(ctx, "", 10, ""); return err }},
		{"Subscribers with limit 0", func() error { _, err := s.Subscribers(ctx, "a", 0, ""); return err }},
		{"Subscribers with a negative limit", func() error { _, err := s.Subscribers(ctx, "a", -1, ""); return err }},
		{"Topics without connection id", func() error { _, err := s.Topics(ctx, ""); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: error %v, want ErrInvalidArgument", c.name, err)
		}
	}
	wantSubscribers(t, s, "a" /* none */)
	wantTopics(t, s, "c1" /* none */)
	if _, err := s.GetConnection(ctx, long); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("GetConnection(long id): error %v, want ErrInvalidArgument", err)
	}
}

func testConcurrentSubscribes(t *testing.T, s store.Store, _ *fakeClock) {
	const workers = 16
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 3*workers)
	var workerIDs []string
	for i := range workers {
		id := fmt.Sprintf("w%02d", i)
		workerIDs = append(workerIDs, id)
		wg.Go(func() {
			errs <- s.Subscribe(ctx, id, "", []string{"shared", "own-" + id})
		})
		wg.Go(func() { // every worker races on the same subscription
			errs <- s.Subscribe(ctx, "shared-conn", "", []string{"shared"})
		})
		wg.Go(func() { // and reads while others write
			_, err := s.Subscribers(ctx, "shared", 5, "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent call: %v", err)
		}
	}
	wantSubscribers(t, s, "shared", append([]string{"shared-conn"}, workerIDs...)...)
	for _, id := range workerIDs {
		wantTopics(t, s, id, "own-"+id, "shared")
	}
	wantTopics(t, s, "shared-conn", "shared")
}

func testPing(t *testing.T, s store.Store, _ *fakeClock) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func mustSubscribe(t *testing.T, s store.Store, connectionID string, topics ...string) {
	t.Helper()
	if err := s.Subscribe(t.Context(), connectionID, "", topics); err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", connectionID, topics, err)
	}
}

// all pages through a topic's subscribers, checked as allPages checks.
func all(t *testing.T, s store.Store, topic string, limit int) []store.Subscription {
	t.Helper()
	return allPages(t, fmt.Sprintf("Subscribers(%q, %d)", topic, limit), limit, func(token string) ([]store.Subscription, string, error) {
		page, err := s.Subscribers(t.Context(), topic, limit, token)
		return page.Subscriptions, page.NextToken, err
	})
}

// allPages pages through a listing of limit a page, read by page, which
// call names in failures, checking that every page but the last is full
// and the last one is not empty (unless there are none).
func allPages[T any](t *testing.T, call string, limit int, page func(token string) (items []T, next string, err error)) []T {
	t.Helper()
	var got []T
	token := ""
	for pages := 1; ; pages++ {
		items, next, err := page(token)
		if err != nil {
			t.Fatalf("%s page %d: %v", call, pages, err)
		}
		got = append(got, items...)
		if next == "" {
			if len(items) == 0 && pages > 1 {
				t.Fatalf("%s: page %d is empty; the page before should have had no token", call, pages)
			}
			return got
		}
		if len(items) != limit {
			t.Fatalf("%s: page %d has %d items and a next page", call, pages, len(items))
		}
		if pages > 10000 {
			t.Fatalf("%s: no last page after %d pages", call, pages)
		}
		token = next
	}
}

func wantSubscribers(t *testing.T, s store.Store, topic string, want ...string) {
	t.Helper()
	if got := ids(all(t, s, topic, 100)); !slices.Equal(got, want) {
		t.Errorf("Subscribers(%q) = %q, want %q", topic, got, want)
	}
}

func wantTopics(t *testing.T, s store.Store, connectionID string, want ...string) {
	t.Helper()
	got, err := s.Topics(t.Context(), connectionID)
	if err != nil {
		t.Fatalf("Topics(%q): %v", connectionID, err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Topics(%q) = %q, want %q", connectionID, got, want)
	}
}

func ids(subs []store.Subscription) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.ConnectionID
	}
	return out
}

func equalSubs(a, b []store.Subscription) bool {
	return slices.EqualFunc(a, b, func(x, y store.Subscription) bool {
		return x.ConnectionID == y.ConnectionID && x.Topic == y.Topic && x.SubscribedAt.Equal(y.SubscribedAt)
	})
}

func shuffled(s []string) []string {
	s = slices.Clone(s)
	rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// oddAndEvenIDs names n connections c-00, c-01, … and splits them by the
// parity of their number: tests of expiry let one half expire first.
func oddAndEvenIDs(n int) (odd, even []string) {
	for i := range n {
		id := fmt.Sprintf("c-%02d", i)
		if i%2 == 1 {
			odd = append(odd, id)
		} else {
			even = append(even, id)
		}
	}
	return odd, even
}
