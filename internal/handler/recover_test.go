package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// The stalled store of deadline_test.go stalls on the streams too.
func (stalled) Positions(ctx context.Context, _ []string, _ time.Duration) (map[string]store.Position, error) {
	return nil, wait(ctx)
}

func (stalled) History(ctx context.Context, _ string, _ uint64, _ int) ([]store.Retained, store.Position, error) {
	return nil, store.Position{}, wait(ctx)
}

// replayPoster records the frames a recovery posts, in order, and fails the
// posts fail says to (by 1-based call number).
type replayPoster struct {
	mu    sync.Mutex
	calls int
	posts [][]byte // what was posted and taken
	to    []string // the connection of each
	fail  func(call int) error
}

func (p *replayPoster) PostToConnection(_ context.Context, id string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil {
		if err := p.fail(p.calls); err != nil {
			return err
		}
	}
	p.posts = append(p.posts, slices.Clone(data))
	p.to = append(p.to, id)
	return nil
}

func (p *replayPoster) posted() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.posts)
}

// subscribedFrame is the answer to subscribe, decoded.
type subscribedFrame struct {
	Type      string                      `json:"type"`
	Code      string                      `json:"code"`
	Message   string                      `json:"message"`
	Topics    []string                    `json:"topics"`
	Positions map[string]wsproto.Position `json:"positions"`
	Recovered map[string]bool             `json:"recovered"`
}

// subscribe sends body to r's subscribe route and decodes the answer, also
// as raw fields.
func subscribe(t *testing.T, r *Routes, body string) (subscribedFrame, map[string]json.RawMessage) {
	t.Helper()
	resp, err := r.Subscribe(context.Background(), message(t, "subscribe", body))
	answered(t, resp, err)
	var f subscribedFrame
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(resp.Body), &f); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(resp.Body), &raw); err != nil {
		t.Fatal(err)
	}
	return f, raw
}

// publishTo does what the publish path does to a topic's stream: takes the
// next position and retains the message frame carrying it (unless retain
// is false: a publish that failed to retain leaves a hole). It returns the
// frame.
func publishTo(t *testing.T, s store.Streams, topic string, retain bool) []byte {
	t.Helper()
	ctx := context.Background()
	pos, err := s.NextPosition(ctx, topic, store.PositionKeep)
	if err != nil {
		t.Fatal(err)
	}
	env, err := wsproto.EncodeMessage(wsproto.Message{
		Topic: topic, ID: fmt.Sprintf("m-%s-%d", topic, pos.Offset), Offset: pos.Offset, Epoch: pos.Epoch,
		Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, pos.Offset)), PublishTime: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if retain {
		if err := s.Retain(ctx, topic, pos, store.Retained{Offset: pos.Offset, Envelope: env}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func position(t *testing.T, s store.Streams, topic string) store.Position {
	t.Helper()
	p, err := s.Positions(context.Background(), []string{topic}, store.PositionKeep)
	if err != nil {
		t.Fatal(err)
	}
	return p[topic]
}

func recordedConnection(t *testing.T, mem *store.Memory, topics ...string) {
	t.Helper()
	if err := mem.PutConnection(context.Background(), store.Connection{ID: connID, ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if len(topics) > 0 {
		if err := mem.Subscribe(context.Background(), connID, "", topics); err != nil {
			t.Fatal(err)
		}
	}
}

func recoveringRoutes(s Connections, p Poster) *Routes {
	r := NewRoutes(s, discard())
	r.Configure(config.Config{MaxSubscriptions: 100, CallTimeout: 5 * time.Second, HistoryTTL: time.Minute, RecoveryMaxMessages: 10})
	r.Poster = p
	return r
}

// Every subscribed answer carries each topic's latest position, a topic
// never published at offset 0 of an epoch that its first publish then
// continues; without "recover" it has no "recovered".
func TestSubscribeAnswersPositions(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	recordedConnection(t, mem)
	for range 3 {
		publishTo(t, mem, "a", true)
	}
	a := position(t, mem, "a")
	p := &replayPoster{}
	r := recoveringRoutes(mem, p)

	f, raw := subscribe(t, r, `{"action":"subscribe","topics":["a","b"]}`)
	if f.Type != wsproto.TypeSubscribed || !slices.Equal(f.Topics, []string{"a", "b"}) {
		t.Fatalf("answer %+v, want subscribed to a and b", f)
	}
	if got := f.Positions["a"]; got.Epoch != a.Epoch || got.Offset != 3 {
		t.Errorf("positions.a = %+v, want %s/3", got, a.Epoch)
	}
	b := f.Positions["b"]
	if b.Epoch == "" || b.Offset != 0 || len(f.Positions) != 2 {
		t.Errorf("positions = %+v, want b at offset 0 of an epoch, and only a and b", f.Positions)
	}
	if _, ok := raw["recovered"]; ok {
		t.Errorf("answer %s has recovered, but the frame had no recover", raw)
	}
	// b's epoch is the one its first publish takes: a client can recover
	// from the position it was told before any message.
	publishTo(t, mem, "b", true)
	f, _ = subscribe(t, r, fmt.Sprintf(`{"action":"subscribe","topics":["b"],"recover":{"b":{"epoch":%q,"offset":0}}}`, b.Epoch))
	if f.Positions["b"] != (wsproto.Position{Epoch: b.Epoch, Offset: 1}) || !f.Recovered["b"] {
		t.Errorf("answer %+v, want b at %s/1, recovered", f, b.Epoch)
	}
	if got := p.posted(); len(got) != 1 || !strings.Contains(string(got[0]), `"offset":1`) {
		t.Errorf("posted %q, want b's first message", got)
	}
}

// A recovering subscribe answers true only when every missed message
// reaches the connection, and then posts exactly those, in offset order,
// byte for byte as retained; otherwise false, with nothing posted.
func TestSubscribeRecover(t *testing.T) {
	t.Parallel()
	type want struct {
		recovered bool
		replayed  []uint64 // offsets posted, in order
	}
	tests := []struct {
		name string
		// arrange publishes to topic "a" (5 messages unless it says
		// otherwise) and returns the recover entry for "a", given the
		// epoch.
		arrange func(t *testing.T, mem *store.Memory, clock *fakeClock) string
		routes  func(r *Routes)
		fail    func(call int) error
		want    want
	}{
		{
			name:    "missed messages are replayed in order",
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			want:    want{true, []uint64{3, 4, 5}},
		},
		{
			name:    "from offset 0: the whole epoch",
			arrange: publish5(`{"epoch":%q,"offset":0}`),
			want:    want{true, []uint64{1, 2, 3, 4, 5}},
		},
		{
			name:    "nothing missed: true, nothing posted",
			arrange: publish5(`{"epoch":%q,"offset":5}`),
			want:    want{true, nil},
		},
		{
			name:    "nothing missed, even with no history kept",
			arrange: publish5(`{"epoch":%q,"offset":5}`),
			routes:  func(r *Routes) { r.HistoryTTL = 0 },
			want:    want{true, nil},
		},
		{
			name:    "exactly RecoveryMaxMessages missed",
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			routes:  func(r *Routes) { r.RecoveryMaxMessages = 3 },
			want:    want{true, []uint64{3, 4, 5}},
		},
		{
			name: "a throttled replay is retried",
			fail: func(call int) error {
				if call == 2 {
					return fmt.Errorf("post: %w", apigw.ErrThrottled)
				}
				return nil
			},
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			want:    want{true, []uint64{3, 4, 5}},
		},
		{
			name:    "another epoch",
			arrange: publish5(`{"epoch":"0123456789abcdef","offset":2}`),
			want:    want{false, nil},
		},
		{
			name:    "no history kept",
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			routes:  func(r *Routes) { r.HistoryTTL = 0 },
			want:    want{false, nil},
		},
		{
			name:    "more missed than RecoveryMaxMessages",
			arrange: publish5(`{"epoch":%q,"offset":1}`),
			routes:  func(r *Routes) { r.RecoveryMaxMessages = 3 },
			want:    want{false, nil},
		},
		{
			name:    "an offset the epoch never reached",
			arrange: publish5(`{"epoch":%q,"offset":6}`),
			want:    want{false, nil},
		},
		{
			name: "retention passed",
			arrange: func(t *testing.T, mem *store.Memory, clock *fakeClock) string {
				entry := publish5(`{"epoch":%q,"offset":2}`)(t, mem, clock)
				clock.advance(2 * time.Minute) // past the history's minute, within the counter's day
				return entry
			},
			want: want{false, nil},
		},
		{
			name: "a hole: a publish that failed to retain",
			arrange: func(t *testing.T, mem *store.Memory, _ *fakeClock) string {
				publishTo(t, mem, "a", true)
				publishTo(t, mem, "a", true)
				publishTo(t, mem, "a", false) // offset 3 took a position, never retained
				publishTo(t, mem, "a", true)
				return fmt.Sprintf(`{"epoch":%q,"offset":1}`, position(t, mem, "a").Epoch)
			},
			want: want{false, nil},
		},
		{
			name:    "the connection is gone: the replay fails",
			fail:    func(int) error { return fmt.Errorf("post: %w", apigw.ErrGone) },
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			want:    want{false, nil},
		},
		{
			name:    "a replay throttled every time",
			fail:    func(int) error { return fmt.Errorf("post: %w", apigw.ErrThrottled) },
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			want:    want{false, nil},
		},
		{
			name: "a replay that fails midway answers false",
			fail: func(call int) error {
				if call == 2 {
					return fmt.Errorf("post: %w", apigw.ErrForbidden)
				}
				return nil
			},
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			// The client got offset 3 already; false tells it to resync.
			want: want{false, []uint64{3}},
		},
		{
			name:    "no replayPoster: nothing can be replayed",
			arrange: publish5(`{"epoch":%q,"offset":2}`),
			routes:  func(r *Routes) { r.Poster = nil },
			want:    want{false, nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := &fakeClock{now: time.Now()}
			mem := store.NewMemory(store.WithClock(clock.Now))
			recordedConnection(t, mem)
			entry := tt.arrange(t, mem, clock)
			retained := map[uint64][]byte{}
			if msgs, _, err := mem.History(ctx, "a", 0, 100); err == nil {
				for _, m := range msgs {
					retained[m.Offset] = m.Envelope
				}
			}
			p := &replayPoster{fail: tt.fail}
			r := recoveringRoutes(mem, p)
			if tt.routes != nil {
				tt.routes(r)
			}

			body := `{"action":"subscribe","topics":["a","b"],"recover":{"a":` + entry + `}}`
			f, _ := subscribe(t, r, body)
			if f.Type != wsproto.TypeSubscribed {
				t.Fatalf("answer %+v, want subscribed", f)
			}
			if got, ok := f.Recovered["a"]; !ok || got != tt.want.recovered || len(f.Recovered) != 1 {
				t.Errorf("recovered = %v, want exactly a: %v", f.Recovered, tt.want.recovered)
			}
			if pos := position(t, mem, "a"); f.Positions["a"] != (wsproto.Position{Epoch: pos.Epoch, Offset: pos.Offset}) {
				t.Errorf("positions.a = %+v, want the latest, %+v", f.Positions["a"], pos)
			}
			var offsets []uint64
			for i, env := range p.posted() {
				m, err := wsproto.DecodeMessage(env)
				if err != nil {
					t.Fatalf("posted %q: %v", env, err)
				}
				if string(env) != string(retained[m.Offset]) || p.to[i] != connID {
					t.Errorf("posted %s to %s, want the retained frame %s to %s", env, p.to[i], retained[m.Offset], connID)
				}
				offsets = append(offsets, m.Offset)
			}
			if !slices.Equal(offsets, tt.want.replayed) {
				t.Errorf("replayed offsets %v, want %v", offsets, tt.want.replayed)
			}
			// Whatever the recovery answered, the subscription holds.
			if stored := storedTopics(t, mem); !slices.Equal(stored, []string{"a", "b"}) {
				t.Errorf("stored topics %q, want a and b", stored)
			}
		})
	}
}

// publish5 publishes five messages to "a" and returns the recover entry
// format fills with a's epoch (format may ignore it).
func publish5(format string) func(*testing.T, *store.Memory, *fakeClock) string {
	return func(t *testing.T, mem *store.Memory, _ *fakeClock) string {
		for range 5 {
			publishTo(t, mem, "a", true)
		}
		epoch := position(t, mem, "a").Epoch
		if strings.Contains(format, "%q") {
			return fmt.Sprintf(format, epoch)
		}
		return format
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Recovery is per topic: one topic's false does not spoil another's true.
func TestSubscribeRecoverTopicsApart(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	recordedConnection(t, mem)
	for range 3 {
		publishTo(t, mem, "a", true)
		publishTo(t, mem, "b", true)
	}
	ea, eb := position(t, mem, "a").Epoch, position(t, mem, "b").Epoch
	p := &replayPoster{}
	r := recoveringRoutes(mem, p)
	body := fmt.Sprintf(`{"action":"subscribe","topics":["a","b","c"],"recover":{"a":{"epoch":%q,"offset":1},"b":{"epoch":%q,"offset":1},"c":{"epoch":%q,"offset":0}}}`, ea, eb+"x", ea)
	f, _ := subscribe(t, r, body)
	if want := map[string]bool{"a": true, "b": false, "c": false}; !mapsEqualBool(f.Recovered, want) {
		t.Errorf("recovered = %v, want %v", f.Recovered, want)
	}
	var got []string
	for _, env := range p.posted() {
		m, _ := wsproto.DecodeMessage(env)
		got = append(got, fmt.Sprintf("%s/%d", m.Topic, m.Offset))
	}
	if !slices.Equal(got, []string{"a/2", "a/3"}) {
		t.Errorf("replayed %v, want a/2 and a/3", got)
	}
}

func mapsEqualBool(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A bad "recover" is a bad_request naming the field; nothing is stored:
// no subscription, no topic position, nothing posted.
func TestSubscribeBadRecoverStoresNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, names string }{
		{`{"action":"subscribe","topics":["a"],"recover":[]}`, `"recover"`},
		{`{"action":"subscribe","topics":["a"],"recover":{"b":{"epoch":"E","offset":1}}}`, `recover["b"]`},
		{`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":-1}}}`, `recover["a"].offset`},
		{`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":1.5}}}`, `recover["a"].offset`},
		{`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":9007199254740993}}}`, `recover["a"].offset`},
		{`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":1,"offset":1}}}`, `recover["a"].epoch`},
		{`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":1,"x":0}}}`, `recover["a"]`},
	} {
		t.Run(tc.body, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			mem := store.NewMemory()
			recordedConnection(t, mem)
			p := &replayPoster{}
			resp, err := recoveringRoutes(mem, p).Subscribe(ctx, message(t, "subscribe", tc.body))
			f := answered(t, resp, err)
			if f.Type != wsproto.TypeError || f.Code != wsproto.CodeBadRequest || !strings.Contains(f.Message, tc.names) {
				t.Errorf("answer %+v, want a bad_request naming %s", f, tc.names)
			}
			if stored := storedTopics(t, mem); len(stored) != 0 {
				t.Errorf("stored topics %q, want none", stored)
			}
			// History reports no epoch for a topic that has no counter:
			// the refused frame started none.
			if _, pos, err := mem.History(ctx, "a", 0, 1); err != nil || pos != (store.Position{}) {
				t.Errorf("topic a has position %+v (%v), want none", pos, err)
			}
			if n := len(p.posted()); n != 0 {
				t.Errorf("%d posts, want none", n)
			}
		})
	}
}

// streamsHook runs a function before or after a store call, to interleave
// a publish with a subscribe at a chosen point.
type streamsHook struct {
	*store.Memory
	mu     sync.Mutex
	calls  []string
	before map[string]func()
	after  map[string]func()
}

func (h *streamsHook) around(name string) func() {
	h.mu.Lock()
	h.calls = append(h.calls, name)
	b, a := h.before[name], h.after[name]
	h.mu.Unlock()
	if b != nil {
		b()
	}
	return func() {
		if a != nil {
			a()
		}
	}
}

func (h *streamsHook) Subscribe(ctx context.Context, id, userID string, topics []string) error {
	defer h.around("Subscribe")()
	return h.Memory.Subscribe(ctx, id, userID, topics)
}

func (h *streamsHook) Positions(ctx context.Context, topics []string, keep time.Duration) (map[string]store.Position, error) {
	defer h.around("Positions")()
	return h.Memory.Positions(ctx, topics, keep)
}

func (h *streamsHook) History(ctx context.Context, topic string, since uint64, limit int) ([]store.Retained, store.Position, error) {
	defer h.around("History")()
	return h.Memory.History(ctx, topic, since, limit)
}

// livePublish publishes to topic as the publish path does (position,
// retain, then read the subscribers and post to each) and posts to p.
func livePublish(t *testing.T, mem *store.Memory, p *replayPoster, topic string) uint64 {
	t.Helper()
	env := publishTo(t, mem, topic, true)
	page, err := mem.Subscribers(context.Background(), topic, 100, "")
	if err != nil {
		t.Error(err)
	}
	for _, s := range page.Subscriptions {
		p.PostToConnection(context.Background(), s.ConnectionID, env)
	}
	m, _ := wsproto.DecodeMessage(env)
	return m.Offset
}

// The subscription is stored before the positions are read: a message
// published at any point of a recovering subscribe reaches the connection,
// live or replayed. Each case publishes once at one point of the
// subscribe's store calls.
func TestSubscribeRecoverNeverLosesAConcurrentPublish(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"before Subscribe", "after Subscribe", "before Positions", "after Positions", "before History", "after History"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			mem := store.NewMemory()
			recordedConnection(t, mem)
			publishTo(t, mem, "a", true)
			publishTo(t, mem, "a", true)
			from := position(t, mem, "a")
			p := &replayPoster{}
			var published atomic.Uint64
			when, call, _ := strings.Cut(point, " ")
			publish := func() { published.Store(livePublish(t, mem, p, "a")) }
			h := &streamsHook{Memory: mem, before: map[string]func(){}, after: map[string]func(){}}
			if when == "before" {
				h.before[call] = publish
			} else {
				h.after[call] = publish
			}
			r := recoveringRoutes(h, p)
			publishTo(t, mem, "a", true) // one missed before the subscribe: History is read

			body := fmt.Sprintf(`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":%q,"offset":%d}}}`, from.Epoch, from.Offset)
			f, _ := subscribe(t, r, body)
			if !f.Recovered["a"] {
				t.Fatalf("answer %+v, want a recovered", f)
			}
			if i, j := slices.Index(h.calls, "Subscribe"), slices.Index(h.calls, "Positions"); i < 0 || j < i {
				t.Errorf("store calls %v: the subscription must be stored before the positions are read", h.calls)
			}
			seen := map[uint64]bool{}
			for _, env := range p.posted() {
				m, _ := wsproto.DecodeMessage(env)
				seen[m.Offset] = true
			}
			for off := from.Offset + 1; off <= published.Load(); off++ {
				if !seen[off] {
					t.Errorf("offset %d never reached the connection (saw %v)", off, seen)
				}
			}
			if published.Load() == 0 {
				t.Errorf("the publish at %s never ran", point)
			}
		})
	}
}

// Publishers publish without pause while the connection subscribes with
// recover again and again, each time from the last offset it had seen:
// over the whole run it sees every offset.
func TestSubscribeRecoverRacingPublishers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := store.NewMemory()
	recordedConnection(t, mem)
	p := &replayPoster{}
	r := recoveringRoutes(mem, p)
	r.RecoveryMaxMessages = 10000
	start := position(t, mem, "a")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Microsecond):
					livePublish(t, mem, p, "a")
				}
			}
		})
	}
	seen := map[uint64]bool{}
	scanned := 0
	// see records what reached the connection since the last look.
	see := func() {
		posts := p.posted()
		for _, env := range posts[scanned:] {
			m, _ := wsproto.DecodeMessage(env)
			seen[m.Offset] = true
		}
		scanned = len(posts)
	}
	last := start.Offset
	for range 30 {
		// The connection drops its subscription (as a reconnect does)
		// and comes back from what it has seen.
		if err := mem.Unsubscribe(ctx, connID, []string{"a"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // away for a moment: publishes miss it
		// From the last offset up to which it has seen every one, as a
		// client must: a later one may have overtaken one still in
		// flight, which this unsubscribe may have cut off.
		see()
		for seen[last+1] {
			last++
		}
		body := fmt.Sprintf(`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":%q,"offset":%d}}}`, start.Epoch, last)
		f, _ := subscribe(t, r, body)
		if !f.Recovered["a"] {
			t.Fatalf("answer %+v from offset %d, want a recovered", f, last)
		}
		time.Sleep(time.Millisecond) // subscribed for a moment: publishes reach it live
	}
	close(stop)
	wg.Wait()
	see()
	end := position(t, mem, "a").Offset
	for off := start.Offset + 1; off <= end; off++ {
		if !seen[off] {
			t.Fatalf("offset %d of %d never reached the connection", off, end)
		}
	}
	if end < 60 {
		t.Errorf("only %d publishes raced the 30 subscribes", end)
	}
}

// slowStreams stalls the named stream call, after the subscription is
// stored.
type slowStreams struct {
	*store.Memory
	stall string
}

func (s slowStreams) Positions(ctx context.Context, topics []string, keep time.Duration) (map[string]store.Position, error) {
	if s.stall == "Positions" {
		return nil, wait(ctx)
	}
	return s.Memory.Positions(ctx, topics, keep)
}

func (s slowStreams) History(ctx context.Context, topic string, since uint64, limit int) ([]store.Retained, store.Position, error) {
	if s.stall == "History" {
		return nil, store.Position{}, wait(ctx)
	}
	return s.Memory.History(ctx, topic, since, limit)
}

// A store that stalls on the positions or the history yields an
// unavailable frame within the call's deadline (the client retries; its
// subscription is already stored), and nothing is replayed.
func TestSubscribeRecoverStalledStore(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	for _, stall := range []string{"Positions", "History"} {
		t.Run(stall, func(t *testing.T) {
			t.Parallel()
			mem := store.NewMemory()
			recordedConnection(t, mem)
			publishTo(t, mem, "a", true)
			publishTo(t, mem, "a", true)
			epoch := position(t, mem, "a").Epoch
			p := &replayPoster{}
			r := recoveringRoutes(slowStreams{mem, stall}, p)
			r.CallTimeout = timeout
			start := time.Now()
			o := within(t, 10*time.Second, func() outcome {
				resp, err := r.Subscribe(context.Background(), message(t, "subscribe",
					fmt.Sprintf(`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":%q,"offset":0}}}`, epoch)))
				return outcome{resp, err}
			})
			if took := time.Since(start); took < timeout || took > timeout+2*time.Second {
				t.Errorf("answered after %v, want just after the %v deadline", took, timeout)
			}
			wantUnavailable(t, o)
			if n := len(p.posted()); n != 0 {
				t.Errorf("%d posts, want none", n)
			}
		})
	}
}

// A history with a hole that fills a moment later (a publish between its
// position and its retain) still recovers: the routes read it again.
func TestSubscribeRecoverWaitsForARetainInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := store.NewMemory()
	recordedConnection(t, mem)
	publishTo(t, mem, "a", true)
	from := position(t, mem, "a")
	pos, err := mem.NextPosition(ctx, "a", store.PositionKeep) // offset 2: its retain is in flight
	if err != nil {
		t.Fatal(err)
	}
	env, _ := wsproto.EncodeMessage(wsproto.Message{Topic: "a", ID: "late", Offset: pos.Offset, Epoch: pos.Epoch, Data: json.RawMessage(`1`), PublishTime: time.Now()})
	h := &streamsHook{Memory: mem, after: map[string]func(){"History": sync.OnceFunc(func() {
		if err := mem.Retain(ctx, "a", pos, store.Retained{Offset: pos.Offset, Envelope: env}, time.Minute); err != nil {
			t.Error(err)
		}
	})}}
	p := &replayPoster{}
	body := fmt.Sprintf(`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":%q,"offset":%d}}}`, from.Epoch, from.Offset)
	f, _ := subscribe(t, recoveringRoutes(h, p), body)
	if !f.Recovered["a"] {
		t.Errorf("answer %+v, want a recovered once the retain landed", f)
	}
	if got := p.posted(); len(got) != 1 || string(got[0]) != string(env) {
		t.Errorf("posted %q, want the late message", got)
	}
	if n := slices.Index(h.calls, "History"); n < 0 || strings.Count(strings.Join(h.calls, " "), "History") < 2 {
		t.Errorf("store calls %v: want History read again", h.calls)
	}
}

// Configure applies HISTORY_TTL and RECOVERY_MAX_MESSAGES.
func TestConfigureRecovery(t *testing.T) {
	t.Parallel()
	r := NewRoutes(store.NewMemory(), discard())
	r.Configure(config.Config{HistoryTTL: 7 * time.Minute, RecoveryMaxMessages: 42, ConnectTokenSecret: "0123456789abcdef0123456789abcdef"})
	if r.HistoryTTL != 7*time.Minute || r.RecoveryMaxMessages != 42 {
		t.Errorf("HistoryTTL %v, RecoveryMaxMessages %d; want 7m and 42", r.HistoryTTL, r.RecoveryMaxMessages)
	}
}

// stalledPoster is a management API that never answers.
type stalledPoster struct{}

func (stalledPoster) PostToConnection(ctx context.Context, _ string, _ []byte) error {
	return wait(ctx)
}

// A management API that stalls on the replay cannot hold the subscribe
// past its deadline: the answer comes in time, subscribed (the
// subscription is stored) with the topic not recovered, so the client
// resyncs.
func TestSubscribeRecoverStalledManagementAPI(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	mem := store.NewMemory()
	recordedConnection(t, mem)
	publishTo(t, mem, "a", true)
	epoch := position(t, mem, "a").Epoch
	r := recoveringRoutes(mem, stalledPoster{})
	r.CallTimeout = timeout
	start := time.Now()
	o := within(t, 10*time.Second, func() outcome {
		resp, err := r.Subscribe(context.Background(), message(t, "subscribe",
			fmt.Sprintf(`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":%q,"offset":0}}}`, epoch)))
		return outcome{resp, err}
	})
	if took := time.Since(start); took < timeout || took > timeout+2*time.Second {
		t.Errorf("answered after %v, want just after the %v deadline", took, timeout)
	}
	var f subscribedFrame
	answered(t, o.resp, o.err)
	if err := json.Unmarshal([]byte(o.resp.Body), &f); err != nil || f.Type != wsproto.TypeSubscribed || f.Recovered["a"] || len(f.Recovered) != 1 {
		t.Errorf("answer %s, want subscribed with a not recovered", o.resp.Body)
	}
	if stored := storedTopics(t, mem); !slices.Equal(stored, []string{"a"}) {
		t.Errorf("stored topics %q, want a", stored)
	}
}
