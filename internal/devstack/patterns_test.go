package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/poll"
)

// TestPatterns subscribes browsers to topic patterns over real WebSockets,
// with connect tokens on, and publishes through the real publisher, on
// both stores.
func TestPatterns(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s storeCase) {
		e := start(t, s.env("patterns", map[string]string{"CONNECT_TOKEN_SECRET": testSecret}))
		// Each part uses topics of its own prefix: patterns would
		// otherwise reach into another part's messages.
		t.Run("overlapping subscriptions", func(t *testing.T) { testOverlappingPatterns(t, e) })
		t.Run("grants", func(t *testing.T) { testPatternGrants(t, e) })
		t.Run("bad input", func(t *testing.T) { testBadPatterns(t, e) })
		t.Run("recovery", func(t *testing.T) { testPatternRecovery(t, e) })
		t.Run("concurrent churn", func(t *testing.T) { testPatternChurn(t, e) })
	})
}

// dialGranted opens a browser whose token grants grants, without
// subscribing.
func (e *e2e) dialGranted(t *testing.T, grants ...string) *client {
	t.Helper()
	token, err := auth.NewTokens(testSecret, time.Now).Mint("alice", grants, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+e.stack.WSAddr+"/?token="+url.QueryEscape(token), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &client{conn: conn}
}

// subscribeFrame is a subscribed or error answer.
type subscribeFrame struct {
	Type      string                     `json:"type"`
	Code      string                     `json:"code"`
	Message   string                     `json:"message"`
	Topics    []string                   `json:"topics"`
	Positions map[string]json.RawMessage `json:"positions"`
	Recovered map[string]bool            `json:"recovered"`
}

// ask sends frame and decodes the answer.
func (c *client) ask(t *testing.T, frame any) subscribeFrame {
	t.Helper()
	b, _ := json.Marshal(frame)
	c.send(t, string(b))
	raw := c.nextRaw(t)
	var f subscribeFrame
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	return f
}

// subscribeTo subscribes to names and checks the answer: subscribed, with
// positions for the topics among them and none for the patterns.
func (c *client) subscribeTo(t *testing.T, names ...string) {
	t.Helper()
	f := c.ask(t, map[string]any{"action": "subscribe", "topics": names})
	if f.Type != "subscribed" || !slices.Equal(f.Topics, names) {
		t.Fatalf("answer %+v, want subscribed to %q", f, names)
	}
	for _, n := range names {
		_, has := f.Positions[n]
		if isPattern := n == "*" || n[len(n)-1] == '*'; has == isPattern {
			t.Fatalf("answer %+v: position of %q given = %v, want it for topics only", f, n, has)
		}
	}
}

// message is a message frame's routing part.
type message struct {
	Type  string `json:"type"`
	Topic string `json:"topic"`
	ID    string `json:"id"`
}

// until reads c's message frames up to and including the one of id.
func (c *client) until(t *testing.T, id string) []message {
	t.Helper()
	var got []message
	for {
		var m message
		if raw := c.nextRaw(t); json.Unmarshal(raw, &m) != nil || m.Type != "message" {
			t.Fatalf("frame %s, want a message", raw)
		}
		got = append(got, m)
		if m.ID == id {
			return got
		}
	}
}

// wantMessages checks that c got exactly the messages of ids, each once, in
// order, each naming the topic it was published to; the last id is a
// marker the test publishes to end the reading.
func (c *client) wantMessages(t *testing.T, name string, want ...message) {
	t.Helper()
	got := c.until(t, want[len(want)-1].ID)
	if !slices.Equal(got, want) {
		t.Errorf("%s got %+v, want %+v", name, got, want)
	}
}

// publishAny publishes a marker to topic, whoever gets it, and returns its
// id.
func (e *e2e) publishAny(t *testing.T, topic string) string {
	t.Helper()
	res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: topic, Data: one()})
	if err != nil {
		t.Fatalf("Publish(%s): %v", topic, err)
	}
	return res.GetMessageId()
}

func (e *e2e) count(t *testing.T, name string) (int32, int32) {
	t.Helper()
	res, err := e.grpc.CountSubscribers(context.Background(), &wsgatewayv1.CountSubscribersRequest{Topic: name})
	if err != nil {
		t.Fatalf("CountSubscribers(%s): %v", name, err)
	}
	return res.GetConnections(), res.GetUsers()
}

func testOverlappingPatterns(t *testing.T, e *e2e) {
	all := e.dialGranted(t, "*")
	all.subscribeTo(t, "ov.b.c", "ov.*", "*")
	below := e.dialGranted(t, "*")
	below.subscribeTo(t, "ov.b.*")
	msg := func(topic, id string) message { return message{"message", topic, id} }

	// One frame per connection per publish, however many of its
	// subscriptions match, and counted once.
	abc := e.publish(t, "ov.b.c", `1`, 2)
	ac := e.publish(t, "ov.c", `2`, 1) // not below ov.b.*
	end := e.publish(t, "ov.b.end", `3`, 2)
	all.wantMessages(t, "the connection on ov.b.c, ov.* and *", msg("ov.b.c", abc), msg("ov.c", ac), msg("ov.b.end", end))
	below.wantMessages(t, "the connection on ov.b.*", msg("ov.b.c", abc), msg("ov.b.end", end))

	// Each pattern lists and counts its own subscribers.
	belowID := e.soleSubscriber(t, "ov.b.*")
	allID := e.soleSubscriber(t, "ov.*")
	if got := e.subscribers(t, "*"); !slices.Equal(got, []string{allID}) {
		t.Errorf("subscribers of * = %q, want %s", got, allID)
	}
	if c, u := e.count(t, "ov.*"); c != 1 || u != 1 {
		t.Errorf("count of ov.* = %d, %d; want 1 connection, 1 user", c, u)
	}
	var rest struct{ Connections, Users int }
	e.getJSON(t, "/v1/topics/ov.b.*/subscribers:count", &rest)
	if rest.Connections != 1 || rest.Users != 1 {
		t.Errorf("REST count of ov.b.* = %+v, want 1 and 1", rest)
	}
	if belowID == allID {
		t.Fatalf("both connections have id %s", allID)
	}

	// Unsubscribing the patterns stops them; the exact topic stays.
	if f := all.ask(t, map[string]any{"action": "unsubscribe", "topics": []string{"ov.*", "*"}}); f.Type != "unsubscribed" {
		t.Fatalf("unsubscribe answered %+v", f)
	}
	e.publish(t, "ov.c", `4`, 0)
	abc = e.publish(t, "ov.b.c", `5`, 2)
	all.wantMessages(t, "the connection back to ov.b.c alone", msg("ov.b.c", abc))
	below.wantMessages(t, "the connection on ov.b.*", msg("ov.b.c", abc))
	if c, _ := e.count(t, "*"); c != 0 {
		t.Errorf("count of * after its unsubscribe = %d", c)
	}
}

// testPatternGrants runs the contract's grant examples: what a grant does
// not cover is refused whole, nothing stored, the connection kept open.
func testPatternGrants(t *testing.T, e *e2e) {
	for _, tc := range []struct {
		grant   string
		names   []string
		allowed bool
	}{
		{"gr.*", []string{"gr.*"}, true},
		{"gr.*", []string{"gr.eu.*"}, true},
		{"gr.*", []string{"gr.eu"}, true},
		{"*", []string{"*"}, true},
		{"gr.eu", []string{"gr.*"}, false},
		{"gr.*", []string{"*"}, false},
		{"gr.eu.*", []string{"gr.eu.x", "gr.*"}, false},
	} {
		c := e.dialGranted(t, tc.grant)
		before := e.countAll(t, tc.names)
		f := c.ask(t, map[string]any{"action": "subscribe", "topics": tc.names})
		switch {
		case tc.allowed && f.Type != "subscribed":
			t.Errorf("grant %s, subscribe %q: %+v, want subscribed", tc.grant, tc.names, f)
		case !tc.allowed && (f.Type != "error" || f.Code != "forbidden"):
			t.Errorf("grant %s, subscribe %q: %+v, want forbidden", tc.grant, tc.names, f)
		case !tc.allowed && !slices.Equal(e.countAll(t, tc.names), before):
			t.Errorf("grant %s, refused subscribe %q stored something", tc.grant, tc.names)
		}
		c.wantOpen(t)
		c.conn.Close(websocket.StatusNormalClosure, "")
	}
}

func (e *e2e) countAll(t *testing.T, names []string) []int32 {
	var out []int32
	for _, n := range names {
		c, _ := e.count(t, n)
		out = append(out, c)
	}
	return out
}

// wantOpen checks that the connection still answers.
func (c *client) wantOpen(t *testing.T) {
	t.Helper()
	c.send(t, `{"action":"ping"}`)
	c.expectFrame(t, `{"type":"pong"}`)
}

// testBadPatterns sends each malformed pattern of the contract, beside a
// good one: invalid_topic, nothing stored, the connection open; a publish
// to a pattern is a 400 that delivers nothing.
func testBadPatterns(t *testing.T, e *e2e) {
	watcher := e.dialGranted(t, "*")
	watcher.subscribeTo(t, "*")
	c := e.dialGranted(t, "*")
	for _, bad := range []string{"bd*", "bd.*.b", "*.bd", "bd.**", ""} {
		for _, action := range []string{"subscribe", "unsubscribe"} {
			f := c.ask(t, map[string]any{"action": action, "topics": []string{"bd.*", bad}})
			if f.Type != "error" || f.Code != "invalid_topic" {
				t.Errorf("%s %q: %+v, want invalid_topic", action, bad, f)
			}
		}
	}
	c.wantOpen(t)
	if n, _ := e.count(t, "bd.*"); n != 0 {
		t.Errorf("bd.* has %d subscribers after refused frames", n)
	}
	for _, path := range []string{"bd.*", "%2A", "bd*"} {
		e.restPublish(t, path, `{"data":1}`, http.StatusBadRequest)
	}
	for _, path := range []string{"bd*", "bd.*.b", "*.bd", "bd.**"} {
		if code, body := e.post(t, "/v1/topics:broadcast", fmt.Sprintf(`{"topics":["bd.x",%q],"data":1}`, path)); code != http.StatusBadRequest {
			t.Errorf("broadcast with %s = %d %s, want 400", path, code, body)
		}
	}
	// Nothing reached the watcher on "*": its next message is this one.
	id := e.publishAny(t, "bd.end")
	watcher.wantMessages(t, "the watcher on *", message{"message", "bd.end", id})
}

// Recovery of a pattern answers false, beside a topic that recovers.
func testPatternRecovery(t *testing.T, e *e2e) {
	c := e.dialGranted(t, "*")
	f := c.ask(t, map[string]any{"action": "subscribe", "topics": []string{"rc.a"}})
	var pos struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}
	if err := json.Unmarshal(f.Positions["rc.a"], &pos); err != nil || f.Type != "subscribed" {
		t.Fatalf("answer %+v: %v", f, err)
	}
	c.conn.Close(websocket.StatusNormalClosure, "")

	c = e.dialGranted(t, "*")
	f = c.ask(t, map[string]any{"action": "subscribe", "topics": []string{"rc.a", "rc.*", "*"}, "recover": map[string]any{
		"rc.a": pos, "rc.*": pos, "*": map[string]any{"epoch": "x", "offset": 0},
	}})
	want := map[string]bool{"rc.a": true, "rc.*": false, "*": false}
	if f.Type != "subscribed" || len(f.Recovered) != len(want) {
		t.Fatalf("answer %+v, want recovered %v", f, want)
	}
	for k, v := range want {
		if f.Recovered[k] != v {
			t.Errorf("recovered[%s] = %v, want %v", k, f.Recovered[k], v)
		}
	}
}

// testPatternChurn publishes many messages while connections subscribe to
// and drop patterns over their sockets: no connection gets a message twice,
// and one subscribed throughout gets every one.
func testPatternChurn(t *testing.T, e *e2e) {
	steady := e.dialGranted(t, "*")
	steady.subscribeTo(t, "ch.b.c", "ch.*", "*")
	const churners, publishes = 4, 40
	type got struct {
		mu  sync.Mutex
		ids map[string]int
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	counts := make([]*got, churners)
	for i := range churners {
		c := e.dialGranted(t, "*")
		c.subscribeTo(t, "ch.b.c")
		g := &got{ids: map[string]int{}}
		counts[i] = g
		answers := make(chan string, 1)
		// One reader per socket: messages and answers interleave.
		wg.Go(func() {
			for {
				_, raw, err := c.conn.Read(context.Background())
				if err != nil {
					return
				}
				var m message
				_ = json.Unmarshal(raw, &m)
				if m.Type == "message" {
					g.mu.Lock()
					g.ids[m.ID]++
					g.mu.Unlock()
				} else {
					answers <- m.Type
				}
			}
		})
		wg.Go(func() {
			names := []string{"ch.*", "*", "ch.b.*"}
			for n := 0; ; n++ {
				select {
				case <-stop:
					c.conn.Close(websocket.StatusNormalClosure, "")
					return
				default:
				}
				name := names[n%len(names)]
				for _, action := range []string{"subscribe", "unsubscribe"} {
					b, _ := json.Marshal(map[string]any{"action": action, "topics": []string{name}})
					if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
						return
					}
					select {
					case a := <-answers:
						if a != action+"d" {
							t.Errorf("%s answered %s", action, a)
						}
					case <-time.After(5 * time.Second):
						t.Errorf("no answer to %s", action)
						return
					}
				}
			}
		})
	}
	var ids []string
	var mu sync.Mutex
	var pubs sync.WaitGroup
	for range publishes {
		pubs.Go(func() {
			res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: "ch.b.c", Data: one()})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids = append(ids, res.GetMessageId())
			mu.Unlock()
		})
	}
	pubs.Wait()
	// Every publish has posted to every recipient: wait for the churners'
	// readers to have read what was posted, then stop them.
	poll.Until(t, eventually, "every churner read every message", func() bool {
		for _, g := range counts {
			g.mu.Lock()
			n := 0
			for _, c := range g.ids {
				n += c
			}
			g.mu.Unlock()
			if n < len(ids) {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	// The steady connection gets every message, once: it is read after
	// the publishes, with a marker to end on.
	end := e.publishAny(t, "ch.end")
	seen := map[string]int{}
	for _, m := range steady.until(t, end) {
		seen[m.ID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("the steady connection got message %s %d times", id, seen[id])
		}
	}
	for i, g := range counts {
		for _, id := range ids {
			if n := g.ids[id]; n != 1 {
				t.Errorf("churner %d, on ch.b.c throughout, got message %s %d times", i, id, n)
			}
		}
	}
}
