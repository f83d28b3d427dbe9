package devstack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/poll"
)

// TestUsers drives the user calls end to end, once per store, with connect
// tokens on: alice on three browsers and bob on one, over real sockets.
// Every $disconnect is lost, as AWS may lose one: whatever the store stops
// listing, the publisher's own calls removed.
func TestUsers(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s storeCase) {
		testUsers(t, start(t, s.env("users", map[string]string{
			"CONNECT_TOKEN_SECRET":           testSecret,
			"EMULATOR_FAULT_LOSE_DISCONNECT": "1",
		})))
	})
}

// dialAs opens a browser as user, subscribed to topics and to a topic of
// its own (only) by which the test learns its connection id.
func (e *e2e) dialAs(t *testing.T, user, only string, topics ...string) *client {
	t.Helper()
	token, err := auth.NewTokens(testSecret, time.Now).Mint(user, []string{"*"}, time.Hour, time.Now())
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
	c := &client{conn: conn}
	topics = append(topics, only)
	frame, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": topics})
	c.send(t, string(frame))
	c.expectSubscribed(t, topics...)
	c.id = e.soleSubscriber(t, only)
	return c
}

// expectUserMessage checks a message sent to user: it names the user and
// carries no topic, offset or epoch.
func (c *client) expectUserMessage(t *testing.T, user, id, data string) {
	t.Helper()
	raw := c.nextRaw(t)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("frame %s: %v", raw, err)
	}
	want := map[string]string{"type": `"message"`, "user": `"` + user + `"`, "id": `"` + id + `"`, "data": data}
	for k, v := range want {
		if !jsonEqual(m[k], []byte(v)) {
			t.Fatalf("frame %s: %s is %s, want %s", raw, k, m[k], v)
		}
	}
	for _, k := range []string{"topic", "offset", "epoch"} {
		if _, ok := m[k]; ok {
			t.Fatalf("frame %s has %q, which a user's message does not", raw, k)
		}
	}
}

// expectNothingBut proves c got nothing since its last read: the next
// frame is a message published to its own topic now.
func (e *e2e) expectNothingBut(t *testing.T, c *client, only string) {
	t.Helper()
	id := e.publish(t, only, `"sentinel"`, 1)
	c.expectMessage(t, only, id, `"sentinel"`, nil)
}

// expectClosedAfter reads the disconnect frame, then the close.
func (c *client) expectClosedAfter(t *testing.T, frame string) {
	t.Helper()
	c.expectFrame(t, frame)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, got, err := c.conn.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after the disconnect frame: %s, %v; want the server's normal close", got, err)
	}
}

func (e *e2e) userConnections(t *testing.T, user string) []string {
	t.Helper()
	page, err := e.stack.Store.UserConnections(context.Background(), user, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	return page.ConnectionIDs
}

func (e *e2e) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(e.http+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func testUsers(t *testing.T, e *e2e) {
	ctx := context.Background()
	a1 := e.dialAs(t, "alice", "only-a1", "news")
	a2 := e.dialAs(t, "alice", "only-a2", "news", "sports")
	a3 := e.dialAs(t, "alice", "only-a3", "news")
	b1 := e.dialAs(t, "bob", "only-b1", "news", "sports")
	alice := []*client{a1, a2, a3}

	// Counted without listing: 4 connections, 2 users, over both APIs.
	count, err := e.grpc.CountSubscribers(ctx, &wsgatewayv1.CountSubscribersRequest{Topic: "news"})
	if err != nil || count.GetConnections() != 4 || count.GetUsers() != 2 {
		t.Fatalf("CountSubscribers(news) = %v, %v; want 4 connections, 2 users", count, err)
	}
	var restCount struct{ Connections, Users int }
	e.getJSON(t, "/v1/topics/news/subscribers:count", &restCount)
	if restCount.Connections != 4 || restCount.Users != 2 {
		t.Fatalf("GET subscribers:count = %+v", restCount)
	}
	list, err := e.grpc.ListSubscribers(ctx, &wsgatewayv1.ListSubscribersRequest{Topic: "news"})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{}
	for _, s := range list.GetSubscribers() {
		users[s.GetConnectionId()] = s.GetUserId()
	}
	for _, c := range alice {
		if users[c.id] != "alice" {
			t.Errorf("ListSubscribers names %s's user %q, want alice", c.id, users[c.id])
		}
	}
	if users[b1.id] != "bob" {
		t.Errorf("ListSubscribers names bob's connection's user %q", users[b1.id])
	}

	t.Run("SendToUser reaches exactly the user's connections", func(t *testing.T) {
		data, _ := structpb.NewValue(map[string]any{"hello": "alice"})
		res, err := e.grpc.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{UserId: "alice", Data: data})
		if err != nil || res.GetDelivered() != 3 || res.GetGone()+res.GetFailed() != 0 {
			t.Fatalf("SendToUser(alice) = %v, %v; want 3 delivered", res, err)
		}
		for _, c := range alice {
			c.expectUserMessage(t, "alice", res.GetMessageId(), `{"hello":"alice"}`)
		}
		e.expectNothingBut(t, b1, "only-b1")

		code, body := e.post(t, "/v1/users/bob:send", `{"data":"hi bob"}`)
		var r struct {
			MessageID string `json:"messageId"`
			Delivered int    `json:"delivered"`
		}
		if err := json.Unmarshal([]byte(body), &r); code != 200 || err != nil || r.Delivered != 1 {
			t.Fatalf("POST /v1/users/bob:send = %d %s", code, body)
		}
		b1.expectUserMessage(t, "bob", r.MessageID, `"hi bob"`)
		for _, c := range alice {
			e.expectNothingBut(t, c, map[*client]string{a1: "only-a1", a2: "only-a2", a3: "only-a3"}[c])
		}
	})

	t.Run("concurrent sends with one key deliver once", func(t *testing.T) {
		const senders = 8
		var wg sync.WaitGroup
		ids := make([]string, senders)
		accepted := make([]bool, senders)
		for i := range senders {
			wg.Go(func() {
				res, err := e.grpc.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{UserId: "bob", Data: one(), IdempotencyKey: "once"})
				if err != nil {
					t.Error(err)
					return
				}
				ids[i], accepted[i] = res.GetMessageId(), !res.GetDuplicate()
			})
		}
		wg.Wait()
		if n := len(slices.DeleteFunc(slices.Clone(accepted), func(a bool) bool { return !a })); n != 1 {
			t.Fatalf("%d sends accepted, want 1", n)
		}
		if distinct := slices.Compact(slices.Sorted(slices.Values(ids))); len(distinct) != 1 {
			t.Errorf("message ids %v, want one", ids)
		}
		b1.expectUserMessage(t, "bob", ids[0], `1`)
		e.expectNothingBut(t, b1, "only-b1")
	})

	t.Run("broadcast: one frame per subscribed topic", func(t *testing.T) {
		code, body := e.post(t, "/v1/topics:broadcast", `{"topics":["news","sports"],"data":{"all":true}}`)
		var res struct {
			Results []struct {
				Topic     string `json:"topic"`
				MessageID string `json:"messageId"`
				Offset    string `json:"offset"`
				Delivered int    `json:"delivered"`
			} `json:"results"`
		}
		if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || len(res.Results) != 2 {
			t.Fatalf("broadcast = %d %s", code, body)
		}
		news, sports := res.Results[0], res.Results[1]
		if news.Topic != "news" || news.Delivered != 4 || sports.Topic != "sports" || sports.Delivered != 2 || news.MessageID == sports.MessageID {
			t.Fatalf("broadcast results %+v, want news to 4 and sports to 2, each its own message", res.Results)
		}
		for c, want := range map[*client][]string{a1: {"news"}, a2: {"news", "sports"}, a3: {"news"}, b1: {"news", "sports"}} {
			var got []string
			for range want {
				var m struct{ Topic, ID string }
				if err := json.Unmarshal(c.nextRaw(t), &m); err != nil {
					t.Fatal(err)
				}
				if (m.Topic == "news" && m.ID != news.MessageID) || (m.Topic == "sports" && m.ID != sports.MessageID) {
					t.Errorf("%s got message %s of %s", c.id, m.ID, m.Topic)
				}
				got = append(got, m.Topic)
			}
			if slices.Sort(got); !slices.Equal(got, want) {
				t.Errorf("%s got frames of %v, want %v", c.id, got, want)
			}
		}
		e.expectNothingBut(t, a1, "only-a1")
		e.expectNothingBut(t, b1, "only-b1")
	})

	t.Run("bad requests change nothing", func(t *testing.T) {
		for _, tc := range []struct{ path, body string }{
			{"/v1/connections/" + a1.id + ":disconnect", `{"userId":"alice"}`},
			{"/v1/users/" + strings.Repeat("u", 129) + ":send", `{"data":1}`},
			{"/v1/topics:broadcast", `{"topics":["news","bad topic"],"data":1}`},
			{"/v1/topics:broadcast", `{"topics":["news","news"],"data":1}`},
			{"/v1/users/alice:send", `{}`},
		} {
			if code, body := e.post(t, tc.path, tc.body); code != http.StatusBadRequest {
				t.Errorf("POST %s %s = %d %s, want 400", tc.path, tc.body, code, body)
			}
		}
		if code, body := e.post(t, "/v1/connections/no-such-connection:disconnect", `{}`); code != 200 || !jsonEqual([]byte(body), []byte(`{"disconnected":0}`)) {
			t.Errorf("disconnect an unknown connection = %d %s, want 0", code, body)
		}
		for c, only := range map[*client]string{a1: "only-a1", a2: "only-a2", a3: "only-a3", b1: "only-b1"} {
			e.expectNothingBut(t, c, only)
		}
		if n := len(e.subscribers(t, "news")); n != 4 {
			t.Errorf("news has %d subscribers, want all 4", n)
		}
	})

	t.Run("Disconnect one connection", func(t *testing.T) {
		res, err := e.grpc.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{ConnectionId: a1.id, Reason: "moved", Reconnect: true})
		if err != nil || res.GetDisconnected() != 1 {
			t.Fatalf("Disconnect(a1) = %v, %v; want 1", res, err)
		}
		a1.expectClosedAfter(t, `{"type":"disconnect","reason":"moved","reconnect":true}`)
		if ids := e.subscribers(t, "news"); slices.Contains(ids, a1.id) || len(ids) != 3 {
			t.Errorf("news lists %v after a1 was disconnected", ids)
		}
		if got := e.userConnections(t, "alice"); slices.Contains(got, a1.id) || len(got) != 2 {
			t.Errorf("alice's connections %v, want a2 and a3", got)
		}
	})

	t.Run("a connection gone without $disconnect is cleaned up by the next send", func(t *testing.T) {
		a3.conn.CloseNow()
		poll.Until(t, eventually, "the emulator to drop a3", func() bool {
			return !slices.Contains(e.stack.Emulator.ConnectionIDs(), a3.id)
		})
		if got := e.userConnections(t, "alice"); !slices.Contains(got, a3.id) {
			t.Fatalf("alice's connections %v: a3 was forgotten without a 410; the $disconnect was not lost", got)
		}
		res, err := e.grpc.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{UserId: "alice", Data: one()})
		if err != nil || res.GetDelivered() != 1 || res.GetGone() != 1 {
			t.Fatalf("SendToUser(alice) = %v, %v; want 1 delivered, 1 gone", res, err)
		}
		a2.expectUserMessage(t, "alice", res.GetMessageId(), `1`)
		if got := e.userConnections(t, "alice"); !slices.Equal(got, []string{a2.id}) {
			t.Errorf("alice's connections %v, want only a2", got)
		}
	})

	t.Run("Disconnect a user", func(t *testing.T) {
		code, body := e.post(t, "/v1/users/alice:disconnect", `{"reason":"signed out"}`)
		if code != 200 || !jsonEqual([]byte(body), []byte(`{"disconnected":1}`)) {
			t.Fatalf("POST /v1/users/alice:disconnect = %d %s, want 1", code, body)
		}
		a2.expectClosedAfter(t, `{"type":"disconnect","reason":"signed out","reconnect":false}`)
		if got := e.userConnections(t, "alice"); len(got) != 0 {
			t.Errorf("alice still has %v", got)
		}
		count, err := e.grpc.CountSubscribers(ctx, &wsgatewayv1.CountSubscribersRequest{Topic: "news"})
		if err != nil || count.GetConnections() != 1 || count.GetUsers() != 1 {
			t.Errorf("CountSubscribers(news) = %v, %v; want bob's one", count, err)
		}
		if code, body := e.post(t, "/v1/users/alice:disconnect", `{}`); code != 200 || !jsonEqual([]byte(body), []byte(`{"disconnected":0}`)) {
			t.Errorf("disconnecting alice again = %d %s, want 0", code, body)
		}
		e.expectNothingBut(t, b1, "only-b1")
	})
}
