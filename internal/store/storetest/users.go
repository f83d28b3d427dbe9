package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/store"
)

// userTests cover a connection's user: UserConnections, the user on
// subscriptions and CountSubscribers.
var userTests = []struct {
	name string
	test func(t *testing.T, s store.Store, clock *fakeClock)
}{
	{"UserConnections", testUserConnections},
	{"UserConnectionsPaging", testUserConnectionsPaging},
	{"UserConnectionsSkipExpired", testUserConnectionsSkipExpired},
	{"UserOfAConnectionChanges", testUserOfAConnectionChanges},
	{"UserPageTokens", testUserPageTokens},
	{"SubscriptionsCarryTheUser", testSubscriptionsCarryTheUser},
	{"CountSubscribers", testCountSubscribers},
	{"CountSubscribersIgnoresExpired", testCountSubscribersIgnoresExpired},
	{"CountSubscribersPastOneQuery", testCountSubscribersPastOneQuery},
	{"ConcurrentConnectionsOfOneUser", testConcurrentConnectionsOfOneUser},
	{"BadUserInputStoresNothing", testBadUserInputStoresNothing},
}

func testUserConnections(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	for _, c := range []struct{ id, user string }{
		{"a2", "alice"}, {"b1", "bob"}, {"a1", "alice"}, {"anon", ""}, {"a3", "alice"},
		// A user whose name is a prefix of another's: keys must match
		// whole user ids.
		{"al1", "al"},
	} {
		putUserConnection(t, s, c.id, c.user)
	}
	wantUserConnections(t, s, "alice", "a1", "a2", "a3")
	wantUserConnections(t, s, "bob", "b1")
	wantUserConnections(t, s, "al", "al1")
	wantUserConnections(t, s, "nobody" /* none */)

	// The membership shares the connection's sort key, but it is not one
	// of the connection's topics, even beside a topic that looks like it.
	mustSubscribeAs(t, s, "a1", "alice", "news", "user#alice")
	wantTopics(t, s, "a1", "news", "user#alice")
	wantUserConnections(t, s, "alice", "a1", "a2", "a3")
	wantSubscribers(t, s, "user#alice", "a1")

	// Deleting a connection takes it from its user, and only it.
	if err := s.DeleteConnection(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	wantUserConnections(t, s, "alice", "a1", "a3")
	if err := s.DeleteConnection(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	wantUserConnections(t, s, "alice", "a3")
	wantTopics(t, s, "a1" /* none */)
	wantSubscribers(t, s, "news" /* none */)
	wantUserConnections(t, s, "bob", "b1")
	if _, err := s.GetConnection(ctx, "a3"); err != nil {
		t.Errorf("GetConnection(a3): %v", err)
	}
}

func testUserConnectionsPaging(t *testing.T, s store.Store, _ *fakeClock) {
	const n = 120
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("conn-%03d", i)
	}
	for _, id := range shuffled(want) {
		putUserConnection(t, s, id, "many")
	}
	putUserConnection(t, s, "conn-other", "other")
	for _, limit := range []int{1, 7, 50, n, 1000} {
		if got := allUserConnections(t, s, "many", limit); !slices.Equal(got, want) {
			t.Errorf("paging by %d returned %d ids, want %d in order; first difference at %d",
				limit, len(got), n, firstDiff(got, want))
		}
	}
}

func testUserConnectionsSkipExpired(t *testing.T, s store.Store, clock *fakeClock) {
	ctx := t.Context()
	// Odd connections connect first and expire first; the last id is odd,
	// so the listing ends with an expired membership.
	odd, even := oddAndEvenIDs(20)
	for _, id := range odd {
		putUserConnection(t, s, id, "u")
	}
	clock.Advance(time.Hour)
	for _, id := range even {
		putUserConnection(t, s, id, "u")
	}
	clock.Advance(ttl - time.Hour - time.Second)
	wantUserConnections(t, s, "u", slices.Sorted(slices.Values(append(slices.Clone(odd), even...)))...)
	clock.Advance(time.Second) // the odd ones expire now
	for _, limit := range []int{1, 3, 4, 100} {
		if got := allUserConnections(t, s, "u", limit); !slices.Equal(got, even) {
			t.Errorf("paging by %d = %v, want only the live %v", limit, got, even)
		}
	}

	// Putting a connection again renews its membership.
	if err := s.PutConnection(ctx, store.Connection{ID: odd[0], ConnectedAt: t0, Subject: "u"}); err != nil {
		t.Fatal(err)
	}
	wantUserConnections(t, s, "u", slices.Sorted(slices.Values(append([]string{odd[0]}, even...)))...)
}

// A connection put again under another user (API Gateway never does it,
// but the store must not list it under both).
func testUserOfAConnectionChanges(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	putUserConnection(t, s, "c1", "first")
	putUserConnection(t, s, "c2", "first")
	putUserConnection(t, s, "c1", "second")
	wantUserConnections(t, s, "first", "c2")
	wantUserConnections(t, s, "second", "c1")

	putUserConnection(t, s, "c2", "") // no user any more
	wantUserConnections(t, s, "first" /* none */)
	if c, err := s.GetConnection(ctx, "c2"); err != nil || c.Subject != "" {
		t.Errorf("GetConnection(c2) = %+v, %v; want it without a user", c, err)
	}

	// Deleting finds the membership of the latest user.
	if err := s.DeleteConnection(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	wantUserConnections(t, s, "second" /* none */)
}

func testUserPageTokens(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	for _, id := range []string{"c1", "c2"} {
		putUserConnection(t, s, id, "alice")
		putUserConnection(t, s, id+"-bob", "bob")
		mustSubscribeAs(t, s, id, "alice", "alice") // a topic named like the user
	}
	first, err := s.UserConnections(ctx, "alice", 1, "")
	if err != nil || first.NextToken == "" {
		t.Fatalf("UserConnections(alice, 1) = %+v, %v; want a next page", first, err)
	}
	if next, err := s.UserConnections(ctx, "alice", 1, first.NextToken); err != nil || !slices.Equal(next.ConnectionIDs, []string{"c2"}) {
		t.Fatalf("second page = %+v, %v; want c2", next, err)
	}
	topicPage, err := s.Subscribers(ctx, "alice", 1, "")
	if err != nil || topicPage.NextToken == "" {
		t.Fatalf("Subscribers(alice, 1) = %+v, %v; want a next page", topicPage, err)
	}

	for name, token := range map[string]string{
		"not base64":                 "%%%",
		"empty JSON":                 "e30",
		"another user's":             first.NextToken,
		"truncated":                  first.NextToken[:len(first.NextToken)/2],
		"a topic's of the same name": topicPage.NextToken,
	} {
		user := "bob"
		if name == "a topic's of the same name" {
			user = "alice"
		}
		page, err := s.UserConnections(ctx, user, 10, token)
		if !errors.Is(err, store.ErrInvalidPageToken) {
			t.Errorf("%s token: UserConnections(%s) = %+v, %v; want ErrInvalidPageToken", name, user, page, err)
		}
	}
	// Nor does a user's token page a topic of the same name.
	if page, err := s.Subscribers(ctx, "alice", 10, first.NextToken); !errors.Is(err, store.ErrInvalidPageToken) {
		t.Errorf("a user's token: Subscribers(alice) = %+v, %v; want ErrInvalidPageToken", page, err)
	}
}

func testSubscriptionsCarryTheUser(t *testing.T, s store.Store, clock *fakeClock) {
	mustSubscribeAs(t, s, "c1", "alice", "a")
	mustSubscribe(t, s, "c2", "a")
	mustSubscribeAs(t, s, "c3", "bob", "a")
	clock.Advance(time.Minute)
	mustSubscribeAs(t, s, "c1", "alice", "a") // again: the first SubscribedAt stays

	want := []store.Subscription{
		{ConnectionID: "c1", Topic: "a", UserID: "alice", SubscribedAt: t0},
		{ConnectionID: "c2", Topic: "a", SubscribedAt: t0},
		{ConnectionID: "c3", Topic: "a", UserID: "bob", SubscribedAt: t0},
	}
	for _, limit := range []int{1, 10} {
		got := all(t, s, "a", limit)
		if !slices.EqualFunc(got, want, func(x, y store.Subscription) bool {
			return equalSubs([]store.Subscription{x}, []store.Subscription{y}) && x.UserID == y.UserID
		}) {
			t.Errorf("Subscribers(a) by %d = %+v, want %+v", limit, got, want)
		}
	}
}

func testCountSubscribers(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	mustSubscribeAs(t, s, "a1", "alice", "t", "other")
	mustSubscribeAs(t, s, "a2", "alice", "t")
	mustSubscribeAs(t, s, "b1", "bob", "t")
	mustSubscribe(t, s, "n1", "t") // connections without a user: connections only
	mustSubscribe(t, s, "n2", "t")
	mustSubscribeAs(t, s, "c1", "carol", "other", "t.sub")
	wantCount(t, s, "t", 5, 2)
	wantCount(t, s, "other", 2, 2)
	wantCount(t, s, "t.sub", 1, 1)
	wantCount(t, s, "never-subscribed", 0, 0)

	if err := s.Unsubscribe(ctx, "b1", []string{"t"}); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, "t", 4, 1)
	if err := s.DeleteConnection(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, "t", 3, 1) // alice still has a2
	wantCount(t, s, "other", 1, 1)
}

func testCountSubscribersIgnoresExpired(t *testing.T, s store.Store, clock *fakeClock) {
	mustSubscribeAs(t, s, "old-dave", "dave", "t") // dave's only subscription
	mustSubscribeAs(t, s, "old-alice", "alice", "t")
	mustSubscribe(t, s, "old-anon", "t")
	clock.Advance(time.Hour)
	mustSubscribeAs(t, s, "alice-2", "alice", "t")
	mustSubscribe(t, s, "anon-2", "t")
	wantCount(t, s, "t", 5, 2)
	clock.Advance(ttl - time.Hour) // the old ones expire now
	wantCount(t, s, "t", 2, 1)
	clock.Advance(time.Hour)
	wantCount(t, s, "t", 0, 0)
}

// More subscriptions than one DynamoDB Query returns (maxQueryLimit, 1000):
// the count pages through the whole partition.
func testCountSubscribersPastOneQuery(t *testing.T, s store.Store, _ *fakeClock) {
	const n, users = 1010, 7
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			user := ""
			if i%10 != 0 { // every tenth without a user
				user = fmt.Sprintf("user-%d", i%users)
			}
			return s.Subscribe(t.Context(), fmt.Sprintf("c%04d", i), user, []string{"big"})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, "big", n, users)
}

// One user opening and closing many connections at once, with readers
// listing and counting meanwhile: in the end exactly the open ones are
// listed and counted.
func testConcurrentConnectionsOfOneUser(t *testing.T, s store.Store, _ *fakeClock) {
	const workers = 16
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 4*workers)
	var kept []string
	for i := range workers {
		id := fmt.Sprintf("w%02d", i)
		closes := i%2 == 1
		if !closes {
			kept = append(kept, id)
		}
		wg.Go(func() {
			if err := s.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: t0, Subject: "shared"}); err != nil {
				errs <- err
				return
			}
			if err := s.Subscribe(ctx, id, "shared", []string{"t"}); err != nil {
				errs <- err
				return
			}
			if closes {
				errs <- s.DeleteConnection(ctx, id)
			}
		})
		wg.Go(func() {
			_, err := s.UserConnections(ctx, "shared", 3, "")
			errs <- err
		})
		wg.Go(func() {
			_, _, err := s.CountSubscribers(ctx, "t")
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
	wantUserConnections(t, s, "shared", kept...)
	wantCount(t, s, "t", len(kept), 1)
	wantSubscribers(t, s, "t", kept...)
}

func testBadUserInputStoresNothing(t *testing.T, s store.Store, _ *fakeClock) {
	ctx := t.Context()
	tooLong := strings.Repeat("é", store.MaxUserIDLen/2) + "x" // 129 bytes
	for name, user := range map[string]string{
		"too long":       tooLong,
		"a control char": "alice\n",
		"a NUL":          "al\x00ice",
		"invalid UTF-8":  "al\xffice",
		"a C1 control":   "alice\u0085",
		"a DEL control":  "alice\x7f",
	} {
		if err := store.ValidateUserID(user); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("ValidateUserID(%s) = %v, want ErrInvalidArgument", name, err)
		}
		id := "bad-" + strings.ReplaceAll(name, " ", "-")
		if err := s.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: t0, Subject: user}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("PutConnection with a user id with %s: %v, want ErrInvalidArgument", name, err)
		}
		if _, err := s.GetConnection(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after a refused PutConnection (%s): GetConnection error %v, want ErrNotFound", name, err)
		}
		if err := s.Subscribe(ctx, id, user, []string{"a"}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("Subscribe with a user id with %s: %v, want ErrInvalidArgument", name, err)
		}
		if _, err := s.UserConnections(ctx, user, 10, ""); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("UserConnections of a user id with %s: %v, want ErrInvalidArgument", name, err)
		}
	}
	// The refused user's valid prefix has no connection either.
	wantUserConnections(t, s, "alice" /* none */)
	wantUserConnections(t, s, tooLong[:store.MaxUserIDLen] /* none */)
	wantSubscribers(t, s, "a" /* none */)
	wantCount(t, s, "a", 0, 0)

	for _, c := range []struct {
		name string
		call func() error
	}{
		{"UserConnections without user", func() error { _, err := s.UserConnections(ctx, "", 10, ""); return err }},
		{"UserConnections with limit 0", func() error { _, err := s.UserConnections(ctx, "u", 0, ""); return err }},
		{"CountSubscribers without topic", func() error { _, _, err := s.CountSubscribers(ctx, ""); return err }},
		{"CountSubscribers with a long topic", func() error {
			_, _, err := s.CountSubscribers(ctx, strings.Repeat("x", 600))
			return err
		}},
	} {
		if err := c.call(); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: error %v, want ErrInvalidArgument", c.name, err)
		}
	}

	// The longest user id, in multi-byte characters, is fine.
	longest := strings.Repeat("é", store.MaxUserIDLen/2)
	putUserConnection(t, s, "longest", longest)
	mustSubscribeAs(t, s, "longest", longest, "a")
	wantUserConnections(t, s, longest, "longest")
	wantCount(t, s, "a", 1, 1)
}

func putUserConnection(t *testing.T, s store.Store, id, user string) {
	t.Helper()
	if err := s.PutConnection(t.Context(), store.Connection{ID: id, ConnectedAt: t0, Subject: user}); err != nil {
		t.Fatalf("PutConnection(%q, user %q): %v", id, user, err)
	}
}

func mustSubscribeAs(t *testing.T, s store.Store, connectionID, user string, topics ...string) {
	t.Helper()
	if err := s.Subscribe(t.Context(), connectionID, user, topics); err != nil {
		t.Fatalf("Subscribe(%q, user %q, %q): %v", connectionID, user, topics, err)
	}
}

// allUserConnections pages through a user's connections, checked as
// allPages checks.
func allUserConnections(t *testing.T, s store.Store, user string, limit int) []string {
	t.Helper()
	return allPages(t, fmt.Sprintf("UserConnections(%q, %d)", user, limit), limit, func(token string) ([]string, string, error) {
		page, err := s.UserConnections(t.Context(), user, limit, token)
		return page.ConnectionIDs, page.NextToken, err
	})
}

func wantUserConnections(t *testing.T, s store.Store, user string, want ...string) {
	t.Helper()
	if got := allUserConnections(t, s, user, 100); !slices.Equal(got, want) {
		t.Errorf("UserConnections(%q) = %q, want %q", user, got, want)
	}
}

func wantCount(t *testing.T, s store.Store, topic string, connections, users int) {
	t.Helper()
	c, u, err := s.CountSubscribers(t.Context(), topic)
	if err != nil {
		t.Fatalf("CountSubscribers(%q): %v", topic, err)
	}
	if c != connections || u != users {
		t.Errorf("CountSubscribers(%q) = %d connections, %d users; want %d, %d", topic, c, u, connections, users)
	}
}
