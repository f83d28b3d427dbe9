package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// publishedFrame is a publish route's answer, decoded.
type publishedFrame struct {
	Type, Topic, ID, Epoch, Code, Message, Ref string
	Offset                                     uint64
}

func publishAnswer(t *testing.T, resp events.APIGatewayProxyResponse, err error) publishedFrame {
	t.Helper()
	answered(t, resp, err)
	var f publishedFrame
	if err := json.Unmarshal([]byte(resp.Body), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// clientStack is the publish route over the real fan-out and the memory
// store, as the assembly builds it, with connections c1 and c2
// subscribed to chat.r1 and granted to publish as given.
type clientStack struct {
	mem   *store.Memory
	post  *framePoster
	fan   *fanout.Fanout
	h     *ClientPublish
	route *Routes
}

func newClientStack(t *testing.T, limit store.RateLimit, grants map[string][]string) *clientStack {
	t.Helper()
	ctx := context.Background()
	mem := store.NewMemory()
	for id, grant := range grants {
		if err := mem.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now(), PublishTopics: grant}); err != nil {
			t.Fatal(err)
		}
		if err := mem.Subscribe(ctx, id, "", []string{"chat.r1"}); err != nil {
			t.Fatal(err)
		}
	}
	post := &framePoster{}
	f := fanout.New(mem, post, fanout.Options{Logger: discard(), Streams: mem, HistoryTTL: time.Minute})
	r := NewRoutes(mem, discard())
	r.Poster, r.HistoryTTL, r.RecoveryMaxMessages = post, time.Minute, 100
	return &clientStack{mem: mem, post: post, fan: f, h: NewClientPublish(r, f, mem, limit), route: r}
}

func (s *clientStack) publish(t *testing.T, conn, body string) publishedFrame {
	t.Helper()
	ev := message(t, wsproto.ActionPublish, body)
	ev.RequestContext.ConnectionID = conn
	resp, err := s.h.Handle(context.Background(), ev)
	return publishAnswer(t, resp, err)
}

// position is the topic's latest position without starting one: an empty
// epoch means nothing was ever published to it.
func (s *clientStack) position(t *testing.T, topic string) store.Position {
	t.Helper()
	_, pos, err := s.mem.History(context.Background(), topic, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

var anyTopic = map[string][]string{"c1": nil, "c2": nil}

// A client's publish reaches every subscriber, its sender included, once,
// through the executor a backend's goes through: the offsets of the two
// continue one stream.
func TestClientPublishDelivers(t *testing.T) {
	t.Parallel()
	s := newClientStack(t, store.RateLimit{Rate: 10, Burst: 20}, anyTopic)
	if _, err := s.fan.Publish(context.Background(), fanout.Message{Topic: "chat.r1", Data: json.RawMessage(`"from a backend"`)}); err != nil {
		t.Fatal(err)
	}
	f := s.publish(t, "c1", `{"action":"publish","topic":"chat.r1","data":{"text":"hi"},"attributes":{"lang":"en"},"ref":"r-1"}`)
	if f.Type != wsproto.TypePublished || f.Topic != "chat.r1" || f.ID == "" || f.Offset != 2 || f.Epoch == "" || f.Ref != "r-1" {
		t.Fatalf("answer %+v, want published at offset 2 with ref r-1", f)
	}
	for _, conn := range []string{"c1", "c2"} {
		s.post.mu.Lock()
		frames := slices.Clone(s.post.frames[conn])
		s.post.mu.Unlock()
		if len(frames) != 2 {
			t.Fatalf("%s got %d frames, want the backend's and the client's", conn, len(frames))
		}
		m, err := wsproto.DecodeMessage(frames[1])
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != f.ID || m.Offset != 2 || m.Epoch != f.Epoch || string(m.Data) != `{"text":"hi"}` || m.Attributes["lang"] != "en" {
			t.Errorf("%s got %+v, want the client's message as answered %+v", conn, m, f)
		}
	}
	// A frame without a ref is answered without one.
	if g := s.publish(t, "c2", `{"action":"publish","topic":"chat.r1","data":3}`); g.Type != wsproto.TypePublished || g.Offset != 3 || g.Ref != "" {
		t.Errorf("answer %+v, want published at offset 3, no ref", g)
	}
}

// Each bad input is answered with the contract's code, echoing the ref,
// and stores and delivers nothing: no frame posted, no position taken, no
// token of the connection's rate spent.
func TestClientPublishRefusesBadInput(t *testing.T) {
	t.Parallel()
	s := newClientStack(t, store.RateLimit{Rate: 0.001, Burst: 1}, map[string][]string{"c1": {"chat.*"}, "c2": {}})
	big := `"` + strings.Repeat("x", fanout.MaxEnvelopeBytes) + `"`
	var many []string
	for i := range fanout.MaxAttributes + 1 {
		many = append(many, fmt.Sprintf(`"k%d":"v"`, i))
	}
	for _, tc := range []struct{ name, conn, body, code string }{
		{"no data", "c1", `{"action":"publish","topic":"chat.r1","ref":"x"}`, wsproto.CodeBadRequest},
		{"over 128 KB", "c1", `{"action":"publish","topic":"chat.r1","data":` + big + `,"ref":"x"}`, wsproto.CodeBadRequest},
		{"data nested too deep", "c1", `{"action":"publish","topic":"chat.r1","data":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `,"ref":"x"}`, wsproto.CodeBadRequest},
		{"too many attributes", "c1", `{"action":"publish","topic":"chat.r1","data":1,"attributes":{` + strings.Join(many, ",") + `},"ref":"x"}`, wsproto.CodeBadRequest},
		{"a pattern", "c1", `{"action":"publish","topic":"chat.*","data":1,"ref":"x"}`, wsproto.CodeInvalidTopic},
		{"every topic", "c1", `{"action":"publish","topic":"*","data":1,"ref":"x"}`, wsproto.CodeInvalidTopic},
		{"an invalid topic", "c1", `{"action":"publish","topic":"chat r1","data":1,"ref":"x"}`, wsproto.CodeInvalidTopic},
		{"outside the grant", "c1", `{"action":"publish","topic":"news","data":1,"ref":"x"}`, wsproto.CodeForbidden},
		{"no grant at all", "c2", `{"action":"publish","topic":"chat.r1","data":1,"ref":"x"}`, wsproto.CodeForbidden},
		{"unknown field", "c1", `{"action":"publish","topic":"chat.r1","data":1,"idempotencyKey":"k","ref":"x"}`, wsproto.CodeBadRequest},
		{"an unregistered connection", "c9", `{"action":"publish","topic":"chat.r1","data":1,"ref":"x"}`, wsproto.CodeBadRequest},
	} {
		f := s.publish(t, tc.conn, tc.body)
		if f.Type != wsproto.TypeError || f.Code != tc.code || f.Ref != "x" {
			t.Errorf("%s: answered %+v, want error %s echoing ref x", tc.name, f, tc.code)
		}
	}
	if n := len(s.post.ids(t)); n != 0 {
		t.Errorf("frames posted to %d connections, want none", n)
	}
	for _, topic := range []string{"chat.r1", "news"} {
		if pos := s.position(t, topic); pos.Epoch != "" {
			t.Errorf("%s has position %+v: a refused publish took one", topic, pos)
		}
	}
	// The whole bucket (one token, refilled once in 1000 s) is left.
	if f := s.publish(t, "c1", `{"action":"publish","topic":"chat.r1","data":1}`); f.Type != wsproto.TypePublished || f.Offset != 1 {
		t.Errorf("after the refusals: %+v, want published at offset 1", f)
	}
}

// Past its burst a connection is answered rate_limited, and that publish
// reaches no one; its next token comes at the configured rate.
func TestClientPublishRateLimited(t *testing.T) {
	t.Parallel()
	s := newClientStack(t, store.RateLimit{Rate: 0.001, Burst: 3}, anyTopic)
	for i := range 3 {
		if f := s.publish(t, "c1", fmt.Sprintf(`{"action":"publish","topic":"chat.r1","data":%d}`, i)); f.Type != wsproto.TypePublished {
			t.Fatalf("publish %d within the burst: %+v", i, f)
		}
	}
	f := s.publish(t, "c1", `{"action":"publish","topic":"chat.r1","data":"over","ref":"r4"}`)
	if f.Type != wsproto.TypeError || f.Code != wsproto.CodeRateLimited || f.Ref != "r4" {
		t.Errorf("past the burst: %+v, want rate_limited echoing r4", f)
	}
	if got := s.post.ids(t)["c2"]; !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Errorf("c2 got %q, want the three publishes within the burst", got)
	}
	if pos := s.position(t, "chat.r1"); pos.Offset != 3 {
		t.Errorf("position %+v after a refused publish, want offset 3", pos)
	}
	// Another connection has a bucket of its own.
	if g := s.publish(t, "c2", `{"action":"publish","topic":"chat.r1","data":"c2"}`); g.Type != wsproto.TypePublished {
		t.Errorf("another connection: %+v, want published", g)
	}
}

// Connections publishing at once each get a position of their own: offsets
// 1..N, each answered once and delivered once to every subscriber.
func TestClientPublishConcurrent(t *testing.T) {
	t.Parallel()
	const n = 16
	grants := map[string][]string{}
	for i := range n {
		grants[fmt.Sprintf("p%02d", i)] = nil
	}
	s := newClientStack(t, store.RateLimit{Rate: 1, Burst: 1}, grants)
	offsets := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ev := message(t, wsproto.ActionPublish, fmt.Sprintf(`{"action":"publish","topic":"chat.r1","data":%d}`, i))
			ev.RequestContext.ConnectionID = fmt.Sprintf("p%02d", i)
			resp, _ := s.h.Handle(context.Background(), ev)
			var f publishedFrame
			json.Unmarshal([]byte(resp.Body), &f)
			offsets[i] = f.Offset
		})
	}
	wg.Wait()
	slices.Sort(offsets)
	for i, o := range offsets {
		if o != uint64(i+1) {
			t.Fatalf("offsets %v, want 1..%d once each", offsets, n)
		}
	}
	for conn, got := range s.post.ids(t) {
		if len(got) != n {
			t.Errorf("%s got %d messages, want %d", conn, len(got), n)
		}
	}
}

// A store that stalls is answered unavailable within the route's
// deadline, echoing the ref; the connection may try again.
func TestClientPublishStalledStore(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	r := NewRoutes(stalled{}, discard())
	r.CallTimeout = timeout
	h := NewClientPublish(r, fanout.New(store.NewMemory(), &framePoster{}, fanout.Options{Logger: discard()}), store.NewMemory(), store.RateLimit{Rate: 1, Burst: 1})
	ev := message(t, wsproto.ActionPublish, `{"action":"publish","topic":"chat.r1","data":1,"ref":"s"}`)
	start := time.Now()
	o := within(t, 10*time.Second, func() outcome {
		resp, err := h.Handle(context.Background(), ev)
		return outcome{resp, err}
	})
	if took := time.Since(start); took < timeout {
		t.Errorf("answered after %v, before the %v deadline: the store did not stall", took, timeout)
	}
	if f := publishAnswer(t, o.resp, o.err); f.Code != wsproto.CodeUnavailable || f.Ref != "s" {
		t.Errorf("answered %+v, want unavailable echoing ref s", f)
	}
}

// slowPoster holds posts to the connections named slow-* until their
// context ends, as a fan-out too large for the route's deadline would be
// cut short; the others take the message at once.
type slowPoster struct{ framePoster }

func (p *slowPoster) PostToConnection(ctx context.Context, id string, data []byte) error {
	if strings.HasPrefix(id, "slow-") {
		<-ctx.Done()
		return ctx.Err()
	}
	return p.framePoster.PostToConnection(ctx, id, data)
}

// The 29-second limit: a fan-out that outlasts the route's deadline stops
// there and the sender is still answered published, since the message took
// its position and was retained before any post. The subscriber it did
// not reach recovers the message by subscribing with recover from the
// last offset it saw.
func TestClientPublishOutlastingTheDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := store.NewMemory()
	for _, id := range []string{"c1", "slow-1"} {
		if err := mem.PutConnection(ctx, store.Connection{ID: id}); err != nil {
			t.Fatal(err)
		}
		if err := mem.Subscribe(ctx, id, "", []string{"chat.r1"}); err != nil {
			t.Fatal(err)
		}
	}
	post := &slowPoster{}
	f := fanout.New(mem, post, fanout.Options{Logger: discard(), Streams: mem, HistoryTTL: time.Minute, MaxAttempts: 1})
	r := NewRoutes(mem, discard())
	r.Configure(config.Config{CallTimeout: 300 * time.Millisecond, HistoryTTL: time.Minute, RecoveryMaxMessages: 10})
	h := NewClientPublish(r, f, mem, store.RateLimit{Rate: 1, Burst: 1})
	ev := message(t, wsproto.ActionPublish, `{"action":"publish","topic":"chat.r1","data":"late","ref":"d"}`)
	ev.RequestContext.ConnectionID = "c1"
	o := within(t, 10*time.Second, func() outcome {
		resp, err := h.Handle(ctx, ev)
		return outcome{resp, err}
	})
	got := publishAnswer(t, o.resp, o.err)
	if got.Type != wsproto.TypePublished || got.Offset != 1 || got.Ref != "d" {
		t.Fatalf("answered %+v, want published at offset 1", got)
	}
	if ids := post.ids(t); !slices.Equal(ids["c1"], []string{`"late"`}) || len(ids["slow-1"]) != 0 {
		t.Fatalf("delivered %v, want c1 alone reached", ids)
	}
	// slow-1 saw nothing of the epoch: offset 0. Its recovering subscribe
	// replays the message, now that posts to it go through.
	r.Poster = &post.framePoster
	sub := message(t, wsproto.ActionSubscribe, fmt.Sprintf(`{"action":"subscribe","topic":"chat.r1","recover":{"chat.r1":{"epoch":%q,"offset":0}}}`, got.Epoch))
	sub.RequestContext.ConnectionID = "slow-1"
	resp, err := r.Subscribe(ctx, sub)
	var answer struct{ Recovered map[string]bool }
	if json.Unmarshal([]byte(resp.Body), &answer); err != nil || !answer.Recovered["chat.r1"] {
		t.Fatalf("recovering subscribe answered %s, %v; want chat.r1 recovered", resp.Body, err)
	}
	if ids := post.ids(t); !slices.Equal(ids["slow-1"], []string{`"late"`}) {
		t.Errorf("slow-1 got %q after recovering, want the message it missed", ids["slow-1"])
	}
}

// $connect keeps the token's publish claim on the connection; a token
// without one publishes to nothing, and with connect auth off a
// connection may publish anywhere.
func TestConnectStoresThePublishGrant(t *testing.T) {
	t.Parallel()
	const secret = "connect-secret-0123456789"
	tokens := auth.NewTokens(secret, time.Now)
	for _, tc := range []struct {
		name    string
		publish []string // nil: no claim
		authOff bool
		want    []string
	}{
		{"a claim", []string{"chat.*", "news"}, false, []string{"chat.*", "news"}},
		{"no claim", nil, false, []string{}},
		{"auth off", nil, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			mem := store.NewMemory()
			r := NewRoutes(mem, discard())
			cfg := config.Config{}
			if !tc.authOff {
				cfg.ConnectTokenSecret = secret
			}
			r.Configure(cfg)
			ev := decodeEvent(t, connectEvent)
			tok, err := tokens.MintGrant("alice", auth.Grant{Topics: []string{"chat.*"}, Publish: tc.publish}, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			ev.QueryStringParameters = map[string]string{"token": tok}
			if resp, err := r.Connect(ctx, ev); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("Connect = %d, %v", resp.StatusCode, err)
			}
			c, err := mem.GetConnection(ctx, connID)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.PublishTopics, tc.want) || (c.PublishTopics == nil) != (tc.want == nil) {
				t.Errorf("PublishTopics = %#v, want %#v", c.PublishTopics, tc.want)
			}
		})
	}
}

// failingRates is a rate limiter whose store is down.
type failingRates struct{}

func (failingRates) TakeToken(context.Context, string, store.RateLimit) (bool, error) {
	return false, fmt.Errorf("TakeToken: %w", store.ErrUnavailable)
}

// A rate bucket that cannot be read or written refuses the publish as
// unavailable: nothing is published unmetered.
func TestClientPublishRateStoreDown(t *testing.T) {
	t.Parallel()
	s := newClientStack(t, store.RateLimit{Rate: 10, Burst: 20}, anyTopic)
	s.h = NewClientPublish(s.route, s.fan, failingRates{}, store.RateLimit{Rate: 10, Burst: 20})
	if f := s.publish(t, "c1", `{"action":"publish","topic":"chat.r1","data":1,"ref":"u"}`); f.Code != wsproto.CodeUnavailable || f.Ref != "u" {
		t.Errorf("answered %+v, want unavailable echoing u", f)
	}
	if n := len(s.post.ids(t)); n != 0 {
		t.Errorf("frames posted to %d connections, want none", n)
	}
	if pos := s.position(t, "chat.r1"); pos.Epoch != "" {
		t.Errorf("position %+v taken by an unmetered publish", pos)
	}
}
