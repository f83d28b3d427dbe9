package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/devstack"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/poll"
)

// TestEndToEnd drives the whole stack the way users do: browsers over real
// WebSockets, backends over real gRPC and HTTP, once per store.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s storeCase) {
		e := start(t, s.env("e2e", nil))
		testDelivery(t, e)
		if s.db != nil {
			testStoreUnreachable(t, e, s.db)
		}
	})
}

// A burst of publishes leaves the management API client with connections
// it dialled and never sent a request on: stopping the stack (Ctrl-C on
// make run, and every test's end) must not wait for the emulated API
// Gateway's server to give up on them.
func TestStackStopsPromptly(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
	const subscribers, publishes = 8, 64
	clients := make([]*client, subscribers)
	for i := range clients {
		clients[i] = e.dial(t, "burst")
	}
	var g errgroup.Group
	for range publishes {
		g.Go(func() error {
			_, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: "burst", Data: one()})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.conn.CloseNow()
	}
	begin := time.Now()
	if err := e.stop(); err != nil {
		t.Fatalf("devstack stopped with %v", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("the stack took %v to stop after a burst of publishes, want well under a second", took)
	}
}

// storeCase is a store a test runs stacks on: memory, or DynamoDB on a
// dynalite of the subtest's own.
type storeCase struct {
	name string
	db   *dynalite.Server // nil for memory
}

// forEachStore runs f in a parallel subtest per store, named after it:
// memory, then DynamoDB on a dynalite started for the subtest.
func forEachStore(t *testing.T, f func(t *testing.T, s storeCase)) {
	t.Helper()
	for _, name := range []string{"memory", "dynamodb"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := storeCase{name: name}
			if name == "dynamodb" {
				s.db = dynalite.Start(t)
			}
			f(t, s)
		})
	}
}

// env is the settings of a stack on s listening on free loopback ports,
// with extra added; on DynamoDB the stack keeps its data in table, so that
// stacks sharing the dynalite keep apart.
func (s storeCase) env(table string, extra map[string]string) map[string]string {
	env := map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"}
	if s.db != nil {
		env["DYNAMODB_ENDPOINT"] = s.db.Endpoint()
		env["TABLE_NAME"] = table
	}
	maps.Copy(env, extra)
	return env
}

// e2e is a running devstack and clients of its three endpoints.
type e2e struct {
	stack *devstack.Stack
	grpc  wsgatewayv1.PublisherServiceClient
	http  string
	// stop stops the stack and returns what Run did; start calls it when
	// the test ends, and a test may call it before.
	stop func() error
}

func start(t *testing.T, env map[string]string) *e2e {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stack, err := devstack.New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- stack.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("devstack stopped with %v", err)
		}
	})

	conn, err := grpc.NewClient(stack.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e := &e2e{stack: stack, grpc: wsgatewayv1.NewPublisherServiceClient(conn), http: "http://" + stack.HTTPAddr, stop: stop}

	// Poll health like a load balancer before testing anything.
	poll.Until(t, eventually, "gRPC health SERVING and /healthz ok", func() bool {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false
		}
		resp, err := http.Get(e.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return e
}

func testDelivery(t *testing.T, e *e2e) {
	// Three browsers on overlapping topics; each has one topic of its own
	// so the test can learn its connection id through ListSubscribers.
	a := e.dial(t, "only-a", "shared")
	b := e.dial(t, "only-b", "shared", "bc")
	c := e.dial(t, "only-c", "bc")
	a.id, b.id, c.id = e.soleSubscriber(t, "only-a"), e.soleSubscriber(t, "only-b"), e.soleSubscriber(t, "only-c")

	// gRPC publish reaches exactly the subscribers of "shared".
	data, _ := structpb.NewValue(map[string]any{"n": 1.0, "s": "x"})
	res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{
		Topic: "shared", Data: data, Attributes: map[string]string{"k": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != 2 || res.Gone != 0 || res.Failed != 0 || res.MessageId == "" {
		t.Fatalf("Publish(shared) = %v, want 2 delivered", res)
	}
	for _, cl := range []*client{a, b} {
		cl.expectMessage(t, "shared", res.MessageId, `{"n":1,"s":"x"}`, map[string]string{"k": "v"})
	}

	// REST publish: plain JSON in, protojson out with zero counts present.
	got := e.restPublish(t, "bc", `{"data":[1,"two",{"three":3}]}`, http.StatusOK)
	if got["delivered"] != 2.0 || got["gone"] != 0.0 || got["failed"] != 0.0 {
		t.Fatalf("REST publish(bc) = %v, want delivered 2 and zero gone/failed present", got)
	}
	for _, cl := range []*client{b, c} {
		cl.expectMessage(t, "bc", got["messageId"].(string), `[1,"two",{"three":3}]`, nil)
	}
	// c got nothing from "shared", a nothing from "bc": their next frame is
	// the one published next.
	id := e.publish(t, "only-c", `"for c"`, 1)
	c.expectMessage(t, "only-c", id, `"for c"`, nil)
	id = e.publish(t, "only-a", `"for a"`, 1)
	a.expectMessage(t, "only-a", id, `"for a"`, nil)

	t.Run("ListSubscribers pages", func(t *testing.T) {
		var ids []string
		token := ""
		for pages := 0; ; pages++ {
			res, err := e.grpc.ListSubscribers(context.Background(), &wsgatewayv1.ListSubscribersRequest{Topic: "shared", PageSize: 1, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Subscribers) > 1 || pages > 3 {
				t.Fatalf("page %d has %d subscribers, page_size was 1", pages, len(res.Subscribers))
			}
			for _, s := range res.Subscribers {
				ids = append(ids, s.ConnectionId)
				if time.Since(s.SubscribedAt.AsTime()) > time.Minute {
					t.Errorf("subscribedAt %v is not recent", s.SubscribedAt.AsTime())
				}
			}
			if token = res.NextPageToken; token == "" {
				break
			}
		}
		slices.Sort(ids)
		want := []string{a.id, b.id}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("subscribers of shared = %v, want %v", ids, want)
		}
		// REST too, with the query parameters of the contract.
		var page struct {
			Subscribers []struct {
				ConnectionID string `json:"connectionId"`
			} `json:"subscribers"`
			NextPageToken string `json:"nextPageToken"`
		}
		e.getJSON(t, "/v1/topics/shared/subscribers?pageSize=1", &page)
		if len(page.Subscribers) != 1 || page.NextPageToken == "" {
			t.Fatalf("REST first page = %+v, want one subscriber and a next token", page)
		}
	})

	t.Run("unsubscribe", func(t *testing.T) {
		a.send(t, `{"action":"unsubscribe","topics":["shared"]}`)
		a.expectFrame(t, `{"type":"unsubscribed","topics":["shared"]}`)
		id := e.publish(t, "shared", `{"after":"unsubscribe"}`, 1)
		b.expectMessage(t, "shared", id, `{"after":"unsubscribe"}`, nil)
		id = e.publish(t, "only-a", `"still here"`, 1)
		a.expectMessage(t, "only-a", id, `"still here"`, nil)
	})

	t.Run("bad frames get error frames and change nothing", func(t *testing.T) {
		for _, tc := range []struct{ frame, code string }{
			{`not json`, "bad_request"},
			{`{"action":"shout"}`, "unknown_action"},
			{`{"action":"subscribe","topics":["bad topic"]}`, "invalid_topic"},
			{`{"action":"subscribe","topics":["ok","-leading-dash"]}`, "invalid_topic"},
			{`{"action":"subscribe"}`, "invalid_topic"},
		} {
			a.send(t, tc.frame)
			f := a.next(t)
			if f["type"] != "error" || f["code"] != tc.code || f["message"] == "" {
				t.Errorf("%s → %v, want an error frame with code %s", tc.frame, f, tc.code)
			}
		}
		// Nothing was stored: "ok" from the half-valid frame has no subscriber.
		if subs := e.subscribers(t, "ok"); len(subs) != 0 {
			t.Errorf("subscribers of ok = %v after a refused subscribe", subs)
		}
		// And the connection still works.
		a.send(t, `{"action":"ping"}`)
		a.expectFrame(t, `{"type":"pong"}`)
	})

	t.Run("bad publishes are refused", func(t *testing.T) {
		huge, _ := structpb.NewValue(strings.Repeat("x", 131072))
		for _, tc := range []struct {
			name string
			req  *wsgatewayv1.PublishRequest
			want string
		}{
			{"invalid topic", &wsgatewayv1.PublishRequest{Topic: "no spaces", Data: one()}, "topic"},
			{"empty topic", &wsgatewayv1.PublishRequest{Data: one()}, "topic"},
			{"no data", &wsgatewayv1.PublishRequest{Topic: "shared"}, "data"},
			{"envelope over 128 KB", &wsgatewayv1.PublishRequest{Topic: "shared", Data: huge}, "131072"},
		} {
			_, err := e.grpc.Publish(context.Background(), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("%s: err = %v, want InvalidArgument naming %q", tc.name, err, tc.want)
			}
		}
		e.restPublish(t, "shared", `{"data":`, http.StatusBadRequest)
		e.restPublish(t, "bad%20topic", `{"data":1}`, http.StatusBadRequest)
		e.restPublish(t, "shared", `{}`, http.StatusBadRequest)
		// None of them reached anyone: b's next frame is the next real message.
		id := e.publish(t, "shared", `"after bad ones"`, 1)
		b.expectMessage(t, "shared", id, `"after bad ones"`, nil)
	})

	t.Run("bad list requests are refused", func(t *testing.T) {
		for _, req := range []*wsgatewayv1.ListSubscribersRequest{
			{Topic: "bad topic"},
			{Topic: "shared", PageSize: -1},
			{Topic: "shared", PageToken: "not-a-token-we-issued"},
		} {
			_, err := e.grpc.ListSubscribers(context.Background(), req)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("ListSubscribers(%v) = %v, want InvalidArgument", req, err)
			}
		}
	})

	t.Run("clean close removes subscriptions", func(t *testing.T) {
		c.conn.Close(websocket.StatusNormalClosure, "bye")
		poll.Until(t, eventually, "c's subscriptions gone", func() bool {
			return len(e.subscribers(t, "only-c")) == 0 && !slices.Contains(e.subscribers(t, "bc"), c.id)
		})
		id := e.publish(t, "bc", `"c left"`, 1)
		b.expectMessage(t, "bc", id, `"c left"`, nil)
	})

	t.Run("vanished connection is found gone and cleaned up", func(t *testing.T) {
		if !e.stack.Emulator.Drop(b.id) {
			t.Fatalf("Drop(%s) found no connection", b.id)
		}
		// No $disconnect came, so the store still lists b.
		if subs := e.subscribers(t, "only-b"); !slices.Equal(subs, []string{b.id}) {
			t.Fatalf("subscribers of only-b = %v before the publish, want [%s]", subs, b.id)
		}
		res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: "bc", Data: one()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Gone != 1 || res.Delivered != 0 || res.Failed != 0 {
			t.Fatalf("Publish(bc) = %v, want 1 gone", res)
		}
		// Gone means the connection and every subscription of it.
		for _, topic := range []string{"bc", "only-b", "shared"} {
			if subs := e.subscribers(t, topic); slices.Contains(subs, b.id) {
				t.Errorf("subscribers of %s still hold %s after 410", topic, b.id)
			}
		}
	})
}

// testStoreUnreachable stops DynamoDB under a running stack.
func testStoreUnreachable(t *testing.T, e *e2e, db *dynalite.Server) {
	db.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := e.grpc.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "shared", Data: one()})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Publish with the store down: %v, want Unavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Publish with the store down took the whole deadline")
	}
	resp, err := http.Get(e.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the store down = %d, want 503", resp.StatusCode)
	}
	// $connect cannot record the connection, so it refuses it (the client
	// retries) rather than admitting a connection no publish could find.
	_, hs, err := websocket.Dial(ctx, "ws://"+e.stack.WSAddr+"/", nil)
	if err == nil || hs == nil || hs.StatusCode != http.StatusInternalServerError {
		t.Fatalf("connect with the store down: %v (response %v), want the handshake refused with 500", err, hs)
	}

	// When the store comes back, everything recovers by itself.
	db.Restart()
	poll.Until(t, eventually, "/readyz ok after the store returned", func() bool {
		resp, err := http.Get(e.http + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	c := e.dial(t, "after-outage")
	id := e.publish(t, "after-outage", `"back"`, 1)
	c.expectMessage(t, "after-outage", id, `"back"`, nil)
}

func one() *structpb.Value { return structpb.NewNumberValue(1) }

func (e *e2e) publish(t *testing.T, topic, data string, wantDelivered int32) string {
	t.Helper()
	var v structpb.Value
	if err := v.UnmarshalJSON([]byte(data)); err != nil {
		t.Fatal(err)
	}
	res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: topic, Data: &v})
	if err != nil {
		t.Fatalf("Publish(%s): %v", topic, err)
	}
	if res.Delivered != wantDelivered {
		t.Fatalf("Publish(%s) = %v, want %d delivered", topic, res, wantDelivered)
	}
	return res.MessageId
}

func (e *e2e) restPublish(t *testing.T, topic, body string, wantStatus int) map[string]any {
	t.Helper()
	resp, err := http.Post(e.http+"/v1/topics/"+topic+":publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("POST %s %s = %d %s, want %d", topic, body, resp.StatusCode, raw, wantStatus)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response %s: %v", raw, err)
	}
	if wantStatus != http.StatusOK && out["message"] == "" {
		t.Errorf("error response %s has no message", raw)
	}
	return out
}

func (e *e2e) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(e.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, raw)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// subscribers lists every subscriber id of topic, following pages.
func (e *e2e) subscribers(t *testing.T, topic string) []string {
	t.Helper()
	var ids []string
	token := ""
	for {
		res, err := e.grpc.ListSubscribers(context.Background(), &wsgatewayv1.ListSubscribersRequest{Topic: topic, PageToken: token})
		if err != nil {
			t.Fatalf("ListSubscribers(%s): %v", topic, err)
		}
		for _, s := range res.Subscribers {
			ids = append(ids, s.ConnectionId)
		}
		if token = res.NextPageToken; token == "" {
			return ids
		}
	}
}

func (e *e2e) soleSubscriber(t *testing.T, topic string) string {
	t.Helper()
	ids := e.subscribers(t, topic)
	if len(ids) != 1 {
		t.Fatalf("subscribers of %s = %v, want exactly one", topic, ids)
	}
	return ids[0]
}

// client is one browser.
type client struct {
	conn *websocket.Conn
	id   string
}

func (e *e2e) dial(t *testing.T, topics ...string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+e.stack.WSAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	c := &client{conn: conn}
	frame, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": topics})
	c.send(t, string(frame))
	c.expectSubscribed(t, topics...)
	return c
}

// expectSubscribed checks that the next frame answers a subscribe to
// topics, with a position for each of them.
func (c *client) expectSubscribed(t *testing.T, topics ...string) {
	t.Helper()
	raw := c.nextRaw(t)
	var f struct {
		Type      string   `json:"type"`
		Topics    []string `json:"topics"`
		Positions map[string]struct {
			Epoch  string  `json:"epoch"`
			Offset *uint64 `json:"offset"`
		} `json:"positions"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || f.Type != "subscribed" || !slices.Equal(f.Topics, topics) || len(f.Positions) != len(topics) {
		t.Fatalf("frame = %s, want subscribed to %q with their positions", raw, topics)
	}
	for _, topic := range topics {
		if p, ok := f.Positions[topic]; !ok || p.Epoch == "" || p.Offset == nil {
			t.Fatalf("frame = %s, want a position for %s", raw, topic)
		}
	}
}

func (c *client) send(t *testing.T, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("send %s: %v", frame, err)
	}
}

func (c *client) nextRaw(t *testing.T) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, frame, err := c.conn.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("got a %v frame, the contract is JSON text frames", typ)
	}
	return frame
}

func (c *client) next(t *testing.T) map[string]any {
	t.Helper()
	raw := c.nextRaw(t)
	var f map[string]any
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("frame %s is not JSON: %v", raw, err)
	}
	return f
}

func (c *client) expectFrame(t *testing.T, want string) {
	t.Helper()
	if got := c.nextRaw(t); !jsonEqual(got, []byte(want)) {
		t.Fatalf("frame = %s, want %s", got, want)
	}
}

// expectMessage checks the contract envelope field by field.
func (c *client) expectMessage(t *testing.T, topic, id, data string, attrs map[string]string) {
	t.Helper()
	raw := c.nextRaw(t)
	var m struct {
		Type        string            `json:"type"`
		Topic       string            `json:"topic"`
		ID          string            `json:"id"`
		Data        json.RawMessage   `json:"data"`
		Attributes  map[string]string `json:"attributes"`
		PublishTime string            `json:"publishTime"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("frame %s: %v", raw, err)
	}
	pt, err := time.Parse(time.RFC3339Nano, m.PublishTime)
	if m.Type != "message" || m.Topic != topic || m.ID != id || !jsonEqual(m.Data, []byte(data)) ||
		!mapsEqual(m.Attributes, attrs) || err != nil || time.Since(pt) > time.Minute {
		t.Fatalf("frame = %s\nwant type message, topic %s, id %s, data %s, attributes %v, a recent RFC 3339 publishTime", raw, topic, id, data, attrs)
	}
}

func mapsEqual(a, b map[string]string) bool {
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

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	ax, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return bytes.Equal(ax, by)
}

// eventually bounds the waits for effects that are asynchronous on AWS too
// ($disconnect after a close).
const eventually = 10 * time.Second
