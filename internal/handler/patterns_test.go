package handler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Patterns through the subscribe route: stored as asked when the grant
// covers them, refused whole (nothing stored) when it does not or when one
// is malformed. The grant cases are the contract's examples.
func TestSubscribePatterns(t *testing.T) {
	t.Parallel()
	ok := func(name, body string, grant []string, want ...string) topicsCase {
		stored := slices.Sorted(slices.Values(want))
		return topicsCase{name: name, body: body, allowed: grant, want: frame{Type: "subscribed", Topics: want}, wantStored: stored}
	}
	refused := func(name, body string, grant []string, code string) topicsCase {
		return topicsCase{name: name, body: body, allowed: grant, want: frame{Type: "error", Code: code}}
	}
	cases := []topicsCase{
		ok("patterns and topics without auth", `{"action":"subscribe","topics":["a.b.c","a.*","*"]}`, nil, "a.b.c", "a.*", "*"),
		ok("star under a star grant", `{"action":"subscribe","topic":"*"}`, []string{"*"}, "*"),
		ok("a prefix grant allows its pattern", `{"action":"subscribe","topic":"orders.*"}`, []string{"orders.*"}, "orders.*"),
		ok("a prefix grant allows a deeper pattern", `{"action":"subscribe","topic":"orders.eu.*"}`, []string{"orders.*"}, "orders.eu.*"),
		ok("a prefix grant allows its topics", `{"action":"subscribe","topic":"orders.eu"}`, []string{"orders.*"}, "orders.eu"),
		refused("an exact grant does not allow the pattern", `{"action":"subscribe","topic":"orders.*"}`, []string{"orders.eu"}, "forbidden"),
		refused("a prefix grant does not allow the star", `{"action":"subscribe","topic":"*"}`, []string{"orders.*"}, "forbidden"),
		refused("a deeper grant does not allow a wider pattern", `{"action":"subscribe","topics":["orders.eu.x","orders.*"]}`, []string{"orders.eu.*"}, "forbidden"),
		refused("an empty grant allows no pattern", `{"action":"subscribe","topic":"a.*"}`, []string{}, "forbidden"),
	}
	// Every malformed pattern of the contract, beside a good one that
	// must not be stored either.
	for _, bad := range []string{"a*", "a.*.b", "*.a", "a.**", "", "**", ".*"} {
		cases = append(cases, refused(fmt.Sprintf("bad pattern %q", bad),
			fmt.Sprintf(`{"action":"subscribe","topics":["a.*",%q]}`, bad), nil, "invalid_topic"))
	}
	testTopicsRoute(t, "subscribe", (*Routes).Subscribe, nil, cases)
}

func TestUnsubscribePatterns(t *testing.T) {
	t.Parallel()
	held := []string{"a.b", "a.*", "*"}
	testTopicsRoute(t, "unsubscribe", (*Routes).Unsubscribe, held, []topicsCase{
		{
			name:       "a pattern alone",
			body:       `{"action":"unsubscribe","topic":"a.*"}`,
			want:       frame{Type: "unsubscribed", Topics: []string{"a.*"}},
			wantStored: []string{"*", "a.b"},
		},
		{
			name:       "the star",
			body:       `{"action":"unsubscribe","topics":["*"]}`,
			want:       frame{Type: "unsubscribed", Topics: []string{"*"}},
			wantStored: []string{"a.*", "a.b"},
		},
		{
			name:       "a bad pattern removes nothing",
			body:       `{"action":"unsubscribe","topics":["a.*","a.**"]}`,
			want:       frame{Type: "error", Code: "invalid_topic"},
			wantStored: []string{"*", "a.*", "a.b"},
		},
	})
}

// streamCalls records which names the routes asked positions and history
// of.
type streamCalls struct {
	*store.Memory
	mu        sync.Mutex
	positions [][]string
	history   []string
}

func (s *streamCalls) Positions(ctx context.Context, topics []string, keep time.Duration) (map[string]store.Position, error) {
	s.mu.Lock()
	s.positions = append(s.positions, slices.Clone(topics))
	s.mu.Unlock()
	return s.Memory.Positions(ctx, topics, keep)
}

func (s *streamCalls) History(ctx context.Context, topic string, since uint64, limit int) ([]store.Retained, store.Position, error) {
	s.mu.Lock()
	s.history = append(s.history, topic)
	s.mu.Unlock()
	return s.Memory.History(ctx, topic, since, limit)
}

// A pattern has no position: the answer gives positions of the frame's
// topics only, and no counter is asked for a pattern; a frame of patterns
// alone asks for none at all.
func TestSubscribePatternsHaveNoPosition(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	recordedConnection(t, mem)
	s := &streamCalls{Memory: mem}
	r := recoveringRoutes(s, &replayPoster{})

	f, _ := subscribe(t, r, `{"action":"subscribe","topics":["a.b","a.*","*"]}`)
	if f.Type != wsproto.TypeSubscribed || len(f.Positions) != 1 || f.Positions["a.b"].Epoch == "" {
		t.Errorf("answer %+v, want subscribed with a position for a.b alone", f)
	}
	f, raw := subscribe(t, r, `{"action":"subscribe","topics":["x.*"]}`)
	if f.Type != wsproto.TypeSubscribed || len(f.Positions) != 0 || string(raw["positions"]) != "{}" {
		t.Errorf("answer %+v (positions %s), want subscribed with empty positions", f, raw["positions"])
	}
	if !slices.EqualFunc(s.positions, [][]string{{"a.b"}}, slices.Equal) {
		t.Errorf("positions asked for %q, want a.b only, once", s.positions)
	}
}

// Recovery of a pattern answers false, not an error, beside the topics of
// the same frame, which recover as ever; no history of a pattern is read.
func TestSubscribeRecoverPattern(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	recordedConnection(t, mem)
	for range 2 {
		publishTo(t, mem, "a.b", true)
	}
	from := position(t, mem, "a.b")
	publishTo(t, mem, "a.b", true)
	s := &streamCalls{Memory: mem}
	p := &replayPoster{}
	r := recoveringRoutes(s, p)

	f, _ := subscribe(t, r, fmt.Sprintf(`{"action":"subscribe","topics":["a.b","a.*","*"],"recover":{"a.b":{"epoch":%q,"offset":2},"a.*":{"epoch":%q,"offset":2},"*":{"epoch":"x","offset":0}}}`, from.Epoch, from.Epoch))
	want := map[string]bool{"a.b": true, "a.*": false, "*": false}
	if f.Type != wsproto.TypeSubscribed || !mapsEqualBool(f.Recovered, want) {
		t.Errorf("answer %+v, want recovered %v", f, want)
	}
	if !slices.Equal(s.history, []string{"a.b"}) {
		t.Errorf("history read of %q, want a.b only", s.history)
	}
	if got := p.posted(); len(got) != 1 {
		t.Errorf("replayed %d messages, want a.b's one missed", len(got))
	}
	if stored := storedTopics(t, mem); !slices.Equal(stored, []string{"*", "a.*", "a.b"}) {
		t.Errorf("stored %q, want the frame's three", stored)
	}
}
