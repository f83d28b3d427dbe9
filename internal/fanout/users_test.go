package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// usersSubs is a store of two users, alice on three connections and bob on
// one, and no topic subscriber.
func usersSubs() *subs {
	return &subs{topic: "none", users: map[string][]string{
		"alice": {"alice-1", "alice-2", "alice-3"},
		"bob":   {"bob-1"},
	}}
}

// A user's message reaches that user's connections and no one else's,
// through the same delivery as a topic's: a gone connection is forgotten,
// a throttled one retried. The frame names the user, and carries no topic
// and no position.
func TestSendToUserReachesOnlyTheUsersConnections(t *testing.T) {
	t.Parallel()
	s := usersSubs()
	api := &mgmtAPI{script: map[string][]int{"alice-2": {410}, "alice-3": {429, 200}}}
	f := fanout.New(s, newPoster(t, api), testOptions())

	res, err := f.SendToUser(t.Context(), fanout.UserMessage{
		UserID: "alice", Data: json.RawMessage(`{"n":1}`), Attributes: map[string]string{"k": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fanout.Result{MessageID: "msg-1", Delivered: 2, Gone: 1}
	if res != want {
		t.Errorf("Result = %+v, want %+v", res, want)
	}
	if got := s.deletedIDs(); !slices.Equal(got, []string{"alice-2"}) {
		t.Errorf("deleted %v, want the gone alice-2 only", got)
	}
	got := api.received()
	if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, []string{"alice-1", "alice-2", "alice-3"}) {
		t.Fatalf("posted to %v, want alice's three connections only", ids)
	}
	frame := `{"type":"message","user":"alice","id":"msg-1","data":{"n":1},"attributes":{"k":"v"},"publishTime":"2025-03-01T10:00:00Z"}`
	for id, bodies := range got {
		for _, b := range bodies {
			if string(b) != frame {
				t.Errorf("%s got %s, want %s", id, b, frame)
			}
		}
	}
}

func TestSendToUserWithNoConnections(t *testing.T) {
	t.Parallel()
	api := &mgmtAPI{}
	f := fanout.New(usersSubs(), newPoster(t, api), testOptions())
	res, err := f.SendToUser(t.Context(), fanout.UserMessage{UserID: "carol", Data: json.RawMessage(`1`)})
	if err != nil || res.Delivered+res.Gone+res.Failed != 0 {
		t.Errorf("SendToUser(carol) = %+v, %v; want nothing delivered and no error", res, err)
	}
	if n := api.posts(); n != 0 {
		t.Errorf("%d posts, want none", n)
	}
}

// Every bad send is refused before anything is read or posted, with a
// message that names the problem.
func TestSendToUserRefusesBadInput(t *testing.T) {
	t.Parallel()
	data := json.RawMessage(`{"n":1}`)
	tests := []struct {
		name string
		m    fanout.UserMessage
		want string
	}{
		{"no user", fanout.UserMessage{Data: data}, "empty user id"},
		{"user over 128 bytes", fanout.UserMessage{UserID: strings.Repeat("u", 129), Data: data}, "longer than 128 bytes"},
		{"user with a control character", fanout.UserMessage{UserID: "al\nice", Data: data}, "control character"},
		{"user not UTF-8", fanout.UserMessage{UserID: "al\xffice", Data: data}, "UTF-8"},
		{"no data", fanout.UserMessage{UserID: "alice"}, "data is required"},
		{"data not JSON", fanout.UserMessage{UserID: "alice", Data: json.RawMessage(`{`)}, "not valid JSON"},
		{"empty attribute key", fanout.UserMessage{UserID: "alice", Data: data, Attributes: map[string]string{"": "v"}}, "attribute key is empty"},
		{"bad idempotency key", fanout.UserMessage{UserID: "alice", Data: data, IdempotencyKey: "k\x00"}, "idempotency key"},
		{"envelope too large", fanout.UserMessage{UserID: "alice", Data: json.RawMessage(`"` + strings.Repeat("x", fanout.MaxEnvelopeBytes) + `"`)}, "API Gateway's limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, api := usersSubs(), &mgmtAPI{}
			f := fanout.New(s, newPoster(t, api), testOptions())
			_, err := f.SendToUser(t.Context(), tt.m)
			if !errors.Is(err, fanout.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInvalid saying %q", err, tt.want)
			}
			if s.readCount() != 0 || api.posts() != 0 {
				t.Errorf("%d reads, %d posts: want none for a refused send", s.readCount(), api.posts())
			}
		})
	}
}

// memUsers is a memory store holding alice's three connections and bob's
// one, each also subscribed to topic.
func memUsers(t *testing.T, topic string) *store.Memory {
	t.Helper()
	mem := store.NewMemory()
	for _, c := range []struct{ id, user string }{{"alice-1", "alice"}, {"alice-2", "alice"}, {"alice-3", "alice"}, {"bob-1", "bob"}} {
		if err := mem.PutConnection(t.Context(), store.Connection{ID: c.id, Subject: c.user, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := mem.Subscribe(t.Context(), c.id, c.user, []string{topic}); err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

// Concurrent sends to one user with one idempotency key deliver once: one
// of them posts, the rest answer its message id as a duplicate. The key is
// the user's alone: the same key on a topic, or on another user, is
// another key.
func TestSendToUserIdempotencyKey(t *testing.T) {
	t.Parallel()
	mem := memUsers(t, "orders")
	api := &mgmtAPI{}
	opts := testOptions()
	opts.NewID = nil // real ids: each accepted send has its own
	opts.Streams = mem
	f := fanout.New(mem, newPoster(t, api), opts)

	const senders = 16
	results := make([]fanout.Result, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			var err error
			results[i], err = f.SendToUser(t.Context(), fanout.UserMessage{UserID: "alice", Data: json.RawMessage(`1`), IdempotencyKey: "k-1"})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	accepted := 0
	for _, r := range results {
		if !r.Duplicate {
			accepted++
			if r.Delivered != 3 {
				t.Errorf("the accepted send delivered %d, want 3", r.Delivered)
			}
		}
		if r.MessageID != results[0].MessageID || r.Position != (store.Position{}) {
			t.Errorf("result %+v: want message id %s and no position for every sender", r, results[0].MessageID)
		}
	}
	if accepted != 1 {
		t.Errorf("%d sends accepted, want exactly 1", accepted)
	}
	for id, n := range api.attempts() {
		if n != 1 {
			t.Errorf("%s got %d posts, want 1", id, n)
		}
	}

	// The same key elsewhere goes through.
	pub, err := f.Publish(t.Context(), fanout.Message{Topic: "orders", Data: json.RawMessage(`2`), IdempotencyKey: "k-1"})
	if err != nil || pub.Duplicate || pub.Delivered != 4 {
		t.Errorf("Publish with alice's key = %+v, %v; want 4 delivered, not a duplicate", pub, err)
	}
	bob, err := f.SendToUser(t.Context(), fanout.UserMessage{UserID: "bob", Data: json.RawMessage(`3`), IdempotencyKey: "k-1"})
	if err != nil || bob.Duplicate || bob.Delivered != 1 {
		t.Errorf("SendToUser(bob) with alice's key = %+v, %v; want 1 delivered, not a duplicate", bob, err)
	}
}

// A send whose user's connections cannot be read delivers nothing, says
// the store is unavailable, and frees its key: the retry goes through.
func TestSendToUserStoreDown(t *testing.T) {
	t.Parallel()
	mem := memUsers(t, "orders")
	down := &failingUsers{Memory: mem, fail: true}
	api := &mgmtAPI{}
	opts := testOptions()
	opts.Streams = mem
	f := fanout.New(down, newPoster(t, api), opts)
	m := fanout.UserMessage{UserID: "alice", Data: json.RawMessage(`1`), IdempotencyKey: "k"}
	if _, err := f.SendToUser(t.Context(), m); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := api.posts(); n != 0 {
		t.Fatalf("%d posts with the store down, want none", n)
	}
	down.set(false)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second) // a key left pending would wait out the window
	defer cancel()
	res, err := f.SendToUser(ctx, m)
	if err != nil || res.Duplicate || res.Delivered != 3 {
		t.Errorf("retry = %+v, %v; want 3 delivered", res, err)
	}
}

// failingUsers is a memory store whose UserConnections fails while fail
// is set.
type failingUsers struct {
	*store.Memory
	mu   sync.Mutex
	fail bool
}

func (s *failingUsers) set(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}

func (s *failingUsers) UserConnections(ctx context.Context, userID string, limit int, token string) (store.ConnectionPage, error) {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return store.ConnectionPage{}, fmt.Errorf("%w: injected", store.ErrUnavailable)
	}
	return s.Memory.UserConnections(ctx, userID, limit, token)
}

// Disconnect tells each of a user's connections, then closes and forgets
// it: a connection whose frame failed is closed all the same, one already
// gone is forgotten and not counted, bob is untouched.
func TestDisconnectUser(t *testing.T) {
	t.Parallel()
	mem := memUsers(t, "orders")
	api := &mgmtAPI{script: map[string][]int{"alice-2": {410}, "alice-3": {500}}}
	opts := testOptions()
	opts.Closer = newPoster(t, api)
	f := fanout.New(mem, opts.Closer.(fanout.Poster), opts)

	n, err := f.Disconnect(t.Context(), fanout.Disconnect{UserID: "alice", Reason: "signed out"})
	if err != nil || n != 2 {
		t.Fatalf("Disconnect = %d, %v; want 2 closed (alice-1, alice-3), alice-2 was gone", n, err)
	}
	frame := `{"type":"disconnect","reason":"signed out","reconnect":false}`
	for _, id := range []string{"alice-1", "alice-2", "alice-3"} {
		if b := api.received()[id]; len(b) == 0 || string(b[0]) != frame {
			t.Errorf("%s was posted %q, want %s", id, b, frame)
		}
	}
	if got := slices.Sorted(slices.Values(api.closed())); !slices.Equal(got, []string{"alice-1", "alice-3"}) {
		t.Errorf("closed %v, want alice-1 and alice-3 (alice-2 was gone already)", got)
	}
	if page, _ := mem.UserConnections(t.Context(), "alice", 10, ""); len(page.ConnectionIDs) != 0 {
		t.Errorf("alice still has %v in the store", page.ConnectionIDs)
	}
	if c, u, _ := mem.CountSubscribers(t.Context(), "orders"); c != 1 || u != 1 {
		t.Errorf("orders has %d connections, %d users; want bob's one left", c, u)
	}
	if _, ok := api.received()["bob-1"]; ok {
		t.Error("bob was posted to")
	}
}

// One connection: told, closed, forgotten; an unknown one is 0 and costs
// no management call; a close that keeps failing is ErrNotClosed and the
// connection stays in the store for the retry.
func TestDisconnectConnection(t *testing.T) {
	t.Parallel()
	mem := memUsers(t, "orders")
	api := &mgmtAPI{closeScript: map[string][]int{"bob-1": {500}}}
	opts := testOptions()
	poster := newPoster(t, api)
	opts.Closer = poster
	f := fanout.New(mem, poster, opts)

	n, err := f.Disconnect(t.Context(), fanout.Disconnect{ConnectionID: "alice-2", Reason: "moved", Reconnect: true})
	if err != nil || n != 1 {
		t.Fatalf("Disconnect(alice-2) = %d, %v; want 1", n, err)
	}
	if got := string(api.received()["alice-2"][0]); got != `{"type":"disconnect","reason":"moved","reconnect":true}` {
		t.Errorf("alice-2 got %s", got)
	}
	if _, err := mem.GetConnection(t.Context(), "alice-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice-2 still in the store: %v", err)
	}

	calls := len(api.closed())
	if n, err := f.Disconnect(t.Context(), fanout.Disconnect{ConnectionID: "nobody"}); err != nil || n != 0 {
		t.Errorf("Disconnect(unknown) = %d, %v; want 0, nil", n, err)
	}
	if n, err := f.Disconnect(t.Context(), fanout.Disconnect{UserID: "carol"}); err != nil || n != 0 {
		t.Errorf("Disconnect(user without connections) = %d, %v; want 0, nil", n, err)
	}
	if len(api.closed()) != calls || len(api.received()["nobody"]) != 0 {
		t.Error("an unknown connection cost management calls")
	}

	n, err = f.Disconnect(t.Context(), fanout.Disconnect{ConnectionID: "bob-1"})
	if !errors.Is(err, fanout.ErrNotClosed) || n != 0 {
		t.Errorf("Disconnect with a failing close = %d, %v; want 0, ErrNotClosed", n, err)
	}
	if got := len(api.closed()) - calls; got != 3 {
		t.Errorf("%d close attempts, want MaxAttempts (3)", got)
	}
	if _, err := mem.GetConnection(t.Context(), "bob-1"); err != nil {
		t.Errorf("bob-1, not closed, was forgotten: %v", err)
	}
}

func TestDisconnectRefusesBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    fanout.Disconnect
		want string
	}{
		{"neither", fanout.Disconnect{Reason: "x"}, "give a connection id or a user id"},
		{"both", fanout.Disconnect{ConnectionID: "alice-1", UserID: "alice"}, "not both"},
		{"reason over 256 bytes", fanout.Disconnect{UserID: "alice", Reason: strings.Repeat("r", 257)}, "at most 256"},
		{"reason not UTF-8", fanout.Disconnect{UserID: "alice", Reason: "\xff"}, "UTF-8"},
		{"user over 128 bytes", fanout.Disconnect{UserID: strings.Repeat("u", 129)}, "longer than 128 bytes"},
		{"connection id with a slash", fanout.Disconnect{ConnectionID: "a/b"}, "printable ASCII"},
		{"connection id too long", fanout.Disconnect{ConnectionID: strings.Repeat("c", 129)}, "at most 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mem := memUsers(t, "orders")
			api := &mgmtAPI{}
			opts := testOptions()
			poster := newPoster(t, api)
			opts.Closer = poster
			f := fanout.New(mem, poster, opts)
			n, err := f.Disconnect(t.Context(), tt.d)
			if !errors.Is(err, fanout.ErrInvalid) || !strings.Contains(err.Error(), tt.want) || n != 0 {
				t.Errorf("Disconnect = %d, %v; want ErrInvalid saying %q", n, err, tt.want)
			}
			if api.posts() != 0 || len(api.closed()) != 0 {
				t.Error("a refused disconnect made management calls")
			}
			if c, _, _ := mem.CountSubscribers(t.Context(), "orders"); c != 4 {
				t.Errorf("%d subscribers left, want all 4", c)
			}
		})
	}
}

// stallingStore is a memory store whose reads of users' connections and
// topics' subscribers never answer before the caller gives up.
type stallingStore struct{ *store.Memory }

func (stallingStore) UserConnections(ctx context.Context, _ string, _ int, _ string) (store.ConnectionPage, error) {
	<-ctx.Done()
	return store.ConnectionPage{}, ctx.Err()
}

func (stallingStore) Subscribers(ctx context.Context, _ string, _ int, _ string) (store.Page, error) {
	<-ctx.Done()
	return store.Page{}, ctx.Err()
}

// A store that stalls holds no call past its caller's deadline: a send, a
// disconnect and a broadcast each end with the deadline, having posted and
// closed nothing, and a send's key is freed for the retry.
func TestUserCallsWithAStalledStore(t *testing.T) {
	t.Parallel()
	mem := memUsers(t, "orders")
	api := &mgmtAPI{}
	opts := testOptions()
	opts.Streams = mem
	poster := newPoster(t, api)
	opts.Closer = poster
	f := fanout.New(stallingStore{mem}, poster, opts)

	calls := map[string]func(context.Context) error{
		"SendToUser": func(ctx context.Context) error {
			_, err := f.SendToUser(ctx, fanout.UserMessage{UserID: "alice", Data: json.RawMessage(`1`), IdempotencyKey: "k"})
			return err
		},
		"Disconnect": func(ctx context.Context) error {
			_, err := f.Disconnect(ctx, fanout.Disconnect{UserID: "alice"})
			return err
		},
		"Broadcast": func(ctx context.Context) error {
			_, err := f.Broadcast(ctx, fanout.Broadcast{Topics: []string{"orders", "other"}, Data: json.RawMessage(`1`)})
			return err
		},
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		start := time.Now()
		err := call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
			t.Errorf("%s = %v after %v, want DeadlineExceeded at the deadline", name, err, time.Since(start))
		}
	}
	if api.posts() != 0 || len(api.closed()) != 0 {
		t.Errorf("%d posts, %d closes with the store stalled", api.posts(), len(api.closed()))
	}
	// The key was released: with the store back, the send goes through
	// at once rather than waiting out the idempotency window.
	g := fanout.New(mem, poster, opts)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	res, err := g.SendToUser(ctx, fanout.UserMessage{UserID: "alice", Data: json.RawMessage(`1`), IdempotencyKey: "k"})
	if err != nil || res.Duplicate || res.Delivered != 3 {
		t.Errorf("retry = %+v, %v; want 3 delivered", res, err)
	}
}
