package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/auth"
)

// clientBurst is the stacks' CLIENT_PUBLISH_BURST; their rate, one
// publish per 100 s, refills nothing within a test. Eight publishes sent at
// once, and a ninth past them, make the route take tokens concurrently, as
// a busy page does; the bucket's own races (many more takes at once) are
// the store conformance suite's.
const clientBurst = 8

// TestClientPublish drives browsers publishing over their WebSockets, on
// each store, with connect auth off and on.
func TestClientPublish(t *testing.T) {
	t.Parallel()
	// On DynamoDB both stacks share the store's dynalite, a table each: a
	// server per stack would only cost the machine.
	forEachStore(t, func(t *testing.T, s storeCase) {
		for _, authOn := range []bool{false, true} {
			name := "auth-off"
			if authOn {
				name = "auth-on"
			}
			t.Run(name, func(t *testing.T) {
				env := s.env("cp-"+s.name+"-"+name, map[string]string{
					"CLIENT_PUBLISH_RATE": "0.01", "CLIENT_PUBLISH_BURST": fmt.Sprint(clientBurst),
				})
				if authOn {
					env["CONNECT_TOKEN_SECRET"] = testSecret
					testPublishGrants(t, start(t, env))
					return
				}
				e := start(t, env)
				t.Run("delivery", func(t *testing.T) { testClientDelivery(t, e) })
				t.Run("bad input", func(t *testing.T) { testClientBadInput(t, e) })
				t.Run("rate limit", func(t *testing.T) { testClientRateLimit(t, e) })
				t.Run("concurrent publishers", func(t *testing.T) { testClientConcurrent(t, e) })
				t.Run("pattern subscribers", func(t *testing.T) { testClientToPattern(t, e) })
			})
		}
	})
}

// answer is a publish's answer or a message frame, decoded.
type answer struct {
	Type    string          `json:"type"`
	Topic   string          `json:"topic"`
	ID      string          `json:"id"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch"`
	Ref     string          `json:"ref"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (c *client) nextAnswer(t *testing.T) answer {
	t.Helper()
	raw := c.nextRaw(t)
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("frame %s: %v", raw, err)
	}
	return a
}

// expectOpenAndIdle checks that the connection is still open and that no
// frame is waiting before the answer to a ping: whatever the test read was
// all there was.
func (c *client) expectOpenAndIdle(t *testing.T) {
	t.Helper()
	c.send(t, `{"action":"ping"}`)
	if a := c.nextAnswer(t); a.Type != "pong" {
		t.Fatalf("after the test's frames: %+v, want only the pong", a)
	}
}

// A browser's publish reaches every subscriber, itself included, once,
// as a message that continues the topic's stream of backend publishes;
// its answer names the message's id and position and echoes the ref.
func testClientDelivery(t *testing.T, e *e2e) {
	a := e.dial(t, "chat.r1")
	b := e.dial(t, "chat.r1")
	e.publish(t, "chat.r1", `"from a backend"`, 2)
	for _, c := range []*client{a, b} {
		if m := c.nextAnswer(t); m.Type != "message" || m.Offset != 1 {
			t.Fatalf("backend's message: %+v, want offset 1", m)
		}
	}
	a.send(t, `{"action":"publish","topic":"chat.r1","data":{"text":"hi"},"attributes":{"lang":"en"},"ref":"r-1"}`)
	// The sender gets the message and the answer; their order is not the
	// contract's (on AWS the post and the route's answer race).
	var msg, published answer
	for range 2 {
		switch f := a.nextAnswer(t); f.Type {
		case "message":
			msg = f
		case "published":
			published = f
		default:
			t.Fatalf("sender got %+v, want its message and the published answer", f)
		}
	}
	if published.Topic != "chat.r1" || published.ID == "" || published.Offset != 2 || published.Epoch == "" || published.Ref != "r-1" {
		t.Errorf("published = %+v, want chat.r1 at offset 2 with an id, an epoch and ref r-1", published)
	}
	for who, m := range map[string]answer{"sender": msg, "other": b.nextAnswer(t)} {
		if m.Type != "message" || m.ID != published.ID || m.Offset != 2 || m.Epoch != published.Epoch || !jsonEqual(m.Data, []byte(`{"text":"hi"}`)) {
			t.Errorf("%s got %+v, want the client's message as published %+v", who, m, published)
		}
	}
	a.expectOpenAndIdle(t)
	b.expectOpenAndIdle(t)
	// And a backend's next publish comes after it.
	e.publish(t, "chat.r1", `"again"`, 2)
	if m := b.nextAnswer(t); m.Offset != 3 {
		t.Errorf("backend's next message at offset %d, want 3", m.Offset)
	}
}

// sendFragmented sends frame as one message in 16 KB frames: API Gateway
// (and the emulator) refuses frames over 32 KB, not messages.
func (c *client) sendFragmented(t *testing.T, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := c.conn.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for part := range slices.Chunk([]byte(frame), 16<<10) {
		if _, err := w.Write(part); err != nil { // one frame per Write
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// Each bad publish is answered with the contract's code, echoing its ref;
// nothing is stored (no history) or delivered (the subscriber, the sender
// itself, gets only the answers), and the connection stays open.
func testClientBadInput(t *testing.T, e *e2e) {
	c := e.dial(t, "bad.t")
	// Under 128 KB as a frame, over it as an envelope.
	big := `{"action":"publish","topic":"bad.t","data":"` + strings.Repeat("x", 131072-100) + `","ref":"big"}`
	cases := []struct{ frame, code, ref string }{
		{`{"action":"publish","topic":"bad.t","ref":"no-data"}`, "bad_request", "no-data"},
		{big, "bad_request", "big"},
		{`{"action":"publish","topic":"bad.*","data":1,"ref":"pattern"}`, "invalid_topic", "pattern"},
		{`{"action":"publish","topic":"*","data":1,"ref":"all"}`, "invalid_topic", "all"},
		{`{"action":"publish","topic":"bad t","data":1,"ref":"invalid"}`, "invalid_topic", "invalid"},
		{`{"action":"publish","topic":"bad.t","data":1,"attributes":{"k":2},"ref":"attr"}`, "bad_request", "attr"},
		{`{"action":"publish","topic":"bad.t","data":1,"ref":"` + strings.Repeat("r", 65) + `"}`, "bad_request", ""},
	}
	for _, tc := range cases {
		c.sendFragmented(t, tc.frame)
		if a := c.nextAnswer(t); a.Type != "error" || a.Code != tc.code || a.Ref != tc.ref || a.Message == "" {
			t.Errorf("%.60s…: answered %+v, want error %s echoing ref %q", tc.frame, a, tc.code, tc.ref)
		}
	}
	c.expectOpenAndIdle(t)
	h, err := e.grpc.History(context.Background(), &wsgatewayv1.HistoryRequest{Topic: "bad.t"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Messages) != 0 || h.GetLatestOffset() != 0 {
		t.Errorf("history of bad.t after refused publishes: %v, want nothing, offset 0", h)
	}
	// None of it spent the connection's rate: its whole burst is left.
	for i := range clientBurst {
		c.send(t, fmt.Sprintf(`{"action":"publish","topic":"other.t","data":%d}`, i))
		if a := c.nextAnswer(t); a.Type != "published" {
			t.Fatalf("publish %d of the burst: %+v", i, a)
		}
	}
}

// Past the burst a connection is answered rate_limited and its message
// reaches no one; the connection stays open, and another connection has
// a bucket of its own.
func testClientRateLimit(t *testing.T, e *e2e) {
	sub := e.dial(t, "rate.t")
	p := e.dialToken(t, "")
	// All at once: the route runs them as they come, as on AWS.
	for i := range clientBurst + 1 {
		p.send(t, fmt.Sprintf(`{"action":"publish","topic":"rate.t","data":%d,"ref":"r%d"}`, i, i))
	}
	var refs []string
	limited := 0
	for range clientBurst + 1 {
		a := p.nextAnswer(t)
		refs = append(refs, a.Ref)
		switch {
		case a.Type == "error" && a.Code == "rate_limited":
			limited++
		case a.Type != "published":
			t.Errorf("answered %+v, want published or rate_limited", a)
		}
	}
	if limited != 1 {
		t.Errorf("%d of %d publishes rate limited, want 1 past the burst of %d", limited, clientBurst+1, clientBurst)
	}
	slices.Sort(refs)
	if len(slices.Compact(refs)) != clientBurst+1 {
		t.Errorf("refs answered %q, want each publish's once", refs)
	}
	offsets := map[uint64]bool{}
	for range clientBurst {
		offsets[sub.nextAnswer(t).Offset] = true
	}
	if len(offsets) != clientBurst {
		t.Errorf("subscriber got offsets %v, want %d distinct", offsets, clientBurst)
	}
	sub.expectOpenAndIdle(t)
	p.expectOpenAndIdle(t)
	p.send(t, `{"action":"publish","topic":"rate.t","data":"still over","ref":"after"}`)
	if a := p.nextAnswer(t); a.Code != "rate_limited" || a.Ref != "after" {
		t.Errorf("over the limit still: %+v, want rate_limited", a)
	}
	other := e.dialToken(t, "")
	other.send(t, `{"action":"publish","topic":"rate.t","data":"other"}`)
	if a := other.nextAnswer(t); a.Type != "published" || a.Offset != clientBurst+1 {
		t.Errorf("another connection: %+v, want published at offset %d", a, clientBurst+1)
	}
}

// Browsers publishing to one topic at once get offsets 1..N, each once,
// and the subscriber gets each message once.
func testClientConcurrent(t *testing.T, e *e2e) {
	const n = 8
	sub := e.dial(t, "conc.t")
	pubs := make([]*client, n)
	for i := range pubs {
		pubs[i] = e.dialToken(t, "")
	}
	got := make([]answer, n)
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Go(func() {
			if err := p.conn.Write(context.Background(), websocket.MessageText,
				fmt.Appendf(nil, `{"action":"publish","topic":"conc.t","data":%d,"ref":"p%d"}`, i, i)); err != nil {
				t.Error(err)
				return
			}
			got[i] = p.nextAnswer(t)
		})
	}
	wg.Wait()
	var answered, delivered []uint64
	for i, a := range got {
		if a.Type != "published" || a.Ref != fmt.Sprintf("p%d", i) {
			t.Errorf("publisher %d: %+v", i, a)
		}
		answered = append(answered, a.Offset)
	}
	for range n {
		delivered = append(delivered, sub.nextAnswer(t).Offset)
	}
	sub.expectOpenAndIdle(t)
	slices.Sort(answered)
	slices.Sort(delivered)
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(answered, want) || !slices.Equal(delivered, want) {
		t.Errorf("offsets answered %v, delivered %v; want 1..%d once each", answered, delivered, n)
	}
}

// dialToken connects with a connect token ("" for none) and subscribes
// to topics, if any.
func (e *e2e) dialToken(t *testing.T, token string, topics ...string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws://" + e.stack.WSAddr + "/"
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	conn, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	c := &client{conn: conn}
	if len(topics) > 0 {
		frame, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": topics})
		c.send(t, string(frame))
		c.expectSubscribed(t, topics...)
	}
	return c
}

// With connect auth on, a connection publishes only where its token's
// publish claim reaches; a token without the claim publishes nowhere. A
// refusal is forbidden, delivers and stores nothing, and leaves the
// connection open.
func testPublishGrants(t *testing.T, e *e2e) {
	tokens := auth.NewTokens(testSecret, time.Now)
	mint := func(g auth.Grant) string {
		tok, err := tokens.MintGrant("alice", g, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	reader := e.dialToken(t, mint(auth.Grant{Topics: []string{"*"}}), "chat.r1", "news")
	writer := e.dialToken(t, mint(auth.Grant{Publish: []string{"chat.*"}}))
	silent := e.dialToken(t, mint(auth.Grant{Topics: []string{"chat.*"}}))

	writer.send(t, `{"action":"publish","topic":"chat.r1","data":1,"ref":"ok"}`)
	if a := writer.nextAnswer(t); a.Type != "published" || a.Offset != 1 || a.Ref != "ok" {
		t.Errorf("within the claim: %+v, want published at offset 1", a)
	}
	if m := reader.nextAnswer(t); m.Type != "message" || m.Topic != "chat.r1" || m.Offset != 1 {
		t.Errorf("reader got %+v, want the message", m)
	}
	for _, tc := range []struct {
		who   *client
		name  string
		frame string
	}{
		{writer, "outside the claim", `{"action":"publish","topic":"news","data":1,"ref":"x"}`},
		{silent, "no publish claim", `{"action":"publish","topic":"chat.r1","data":1,"ref":"x"}`},
	} {
		tc.who.send(t, tc.frame)
		if a := tc.who.nextAnswer(t); a.Type != "error" || a.Code != "forbidden" || a.Ref != "x" {
			t.Errorf("%s: %+v, want forbidden echoing x", tc.name, a)
		}
		tc.who.expectOpenAndIdle(t)
	}
	reader.expectOpenAndIdle(t) // nothing more was delivered
	for topic, want := range map[string]uint64{"chat.r1": 1, "news": 0} {
		h, err := e.grpc.History(context.Background(), &wsgatewayv1.HistoryRequest{Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(h.Messages)) != want || h.GetLatestOffset() != want {
			t.Errorf("history of %s: %v, want %d message(s)", topic, h, want)
		}
	}
}

// A client's publish reaches the subscribers of a pattern its topic
// matches, as a backend's does: it goes through the same executor.
func testClientToPattern(t *testing.T, e *e2e) {
	watcher := e.dialToken(t, "")
	watcher.send(t, `{"action":"subscribe","topics":["room.*"]}`)
	if a := watcher.nextAnswer(t); a.Type != "subscribed" {
		t.Fatalf("subscribe to room.*: %+v", a)
	}
	p := e.dialToken(t, "")
	p.send(t, `{"action":"publish","topic":"room.1","data":"hello","ref":"pat"}`)
	published := p.nextAnswer(t)
	if published.Type != "published" || published.Ref != "pat" {
		t.Fatalf("answered %+v, want published", published)
	}
	if m := watcher.nextAnswer(t); m.Type != "message" || m.Topic != "room.1" || m.ID != published.ID {
		t.Errorf("pattern subscriber got %+v, want the message %s on room.1", m, published.ID)
	}
	watcher.expectOpenAndIdle(t)
	p.expectOpenAndIdle(t)
}
