package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Events as API Gateway sends them, modelled on aws-lambda-go's
// events/testdata/apigw-websocket-request*.json.
const (
	connectEvent = `{
  "headers": {
    "Host": "dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com",
    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/118.0.0.0",
    "X-Forwarded-For": "49.105.91.154"
  },
  "multiValueHeaders": {
    "Host": ["dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com"],
    "Sec-WebSocket-Version": ["13"]
  },
  "queryStringParameters": {"token": "t0ken"},
  "multiValueQueryStringParameters": {"token": ["t0ken"]},
  "requestContext": {
    "routeKey": "$connect",
    "eventType": "CONNECT",
    "extendedRequestId": "R1kmxFb2NjMFXAg=",
    "requestTime": "20/Jan/2024:11:54:57 +0000",
    "messageDirection": "IN",
    "stage": "prod",
    "connectedAt": 1705751697419,
    "requestTimeEpoch": 1705751697420,
    "identity": {
      "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/118.0.0.0",
      "sourceIp": "49.105.91.154"
    },
    "requestId": "R1kmxFb2NjMFXAg=",
    "domainName": "dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com",
    "connectionId": "R1kmxc2VNjMCFIA=",
    "apiId": "dl7ptocha9"
  },
  "isBase64Encoded": false
}`
	disconnectEvent = `{
  "headers": {"Host": "dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
  "multiValueHeaders": {"Host": ["dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com"]},
  "requestContext": {
    "routeKey": "$disconnect",
    "disconnectStatusCode": 1001,
    "eventType": "DISCONNECT",
    "extendedRequestId": "R1koeHsUtjMFbRw=",
    "requestTime": "20/Jan/2024:11:55:08 +0000",
    "messageDirection": "IN",
    "disconnectReason": "",
    "stage": "prod",
    "connectedAt": 1705751697419,
    "requestTimeEpoch": 1705751708326,
    "identity": {"userAgent": "Mozilla/5.0", "sourceIp": "49.105.91.154"},
    "requestId": "R1koeHsUtjMFbRw=",
    "domainName": "dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com",
    "connectionId": "R1kmxc2VNjMCFIA=",
    "apiId": "dl7ptocha9"
  },
  "isBase64Encoded": false
}`
	// messageEvent takes the route key and the frame, both JSON strings.
	messageEvent = `{
  "requestContext": {
    "routeKey": %s,
    "messageId": "R1knPc2ntjMCFIA=",
    "eventType": "MESSAGE",
    "extendedRequestId": "R1knPH17NjMFftw=",
    "requestTime": "20/Jan/2024:11:55:00 +0000",
    "messageDirection": "IN",
    "stage": "prod",
    "connectedAt": 1705751697419,
    "requestTimeEpoch": 1705751700453,
    "identity": {"userAgent": "Mozilla/5.0", "sourceIp": "49.105.91.154"},
    "requestId": "R1knPH17NjMFftw=",
    "domainName": "dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com",
    "connectionId": "R1kmxc2VNjMCFIA=",
    "apiId": "dl7ptocha9"
  },
  "body": %s,
  "isBase64Encoded": false
}`
	connID = "R1kmxc2VNjMCFIA="
)

func decodeEvent(t *testing.T, raw string) events.APIGatewayWebsocketProxyRequest {
	t.Helper()
	var ev events.APIGatewayWebsocketProxyRequest
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return ev
}

func message(t *testing.T, routeKey, body string) events.APIGatewayWebsocketProxyRequest {
	t.Helper()
	rk, _ := json.Marshal(routeKey)
	b, _ := json.Marshal(body)
	return decodeEvent(t, fmt.Sprintf(messageEvent, rk, b))
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// outage makes the named store methods fail the way the DynamoDB store does
// when DynamoDB cannot be reached.
type outage struct {
	Connections
	failing []string
}

func (o outage) fail(method string) error {
	if slices.Contains(o.failing, method) {
		return fmt.Errorf("%s: %w", method, store.ErrUnavailable)
	}
	return nil
}

func (o outage) PutConnection(ctx context.Context, c store.Connection) error {
	if err := o.fail("PutConnection"); err != nil {
		return err
	}
	return o.Connections.PutConnection(ctx, c)
}

func (o outage) GetConnection(ctx context.Context, id string) (store.Connection, error) {
	if err := o.fail("GetConnection"); err != nil {
		return store.Connection{}, err
	}
	return o.Connections.GetConnection(ctx, id)
}

func (o outage) DeleteConnection(ctx context.Context, id string) error {
	if err := o.fail("DeleteConnection"); err != nil {
		return err
	}
	return o.Connections.DeleteConnection(ctx, id)
}

func (o outage) Subscribe(ctx context.Context, id, userID string, topics []string) error {
	if err := o.fail("Subscribe"); err != nil {
		return err
	}
	return o.Connections.Subscribe(ctx, id, userID, topics)
}

func (o outage) Unsubscribe(ctx context.Context, id string, topics []string) error {
	if err := o.fail("Unsubscribe"); err != nil {
		return err
	}
	return o.Connections.Unsubscribe(ctx, id, topics)
}

// frame is any server frame, decoded.
type frame struct {
	Type    string   `json:"type"`
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Topics  []string `json:"topics"`
}

// answered checks that a MESSAGE route answered with a frame, and decodes it.
func answered(t *testing.T, resp events.APIGatewayProxyResponse, err error) frame {
	t.Helper()
	if err != nil {
		t.Fatalf("route returned error %v, want a frame", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200 so that API Gateway relays the frame", resp.StatusCode)
	}
	var f frame
	if err := json.Unmarshal([]byte(resp.Body), &f); err != nil {
		t.Fatalf("body %q is not a frame: %v", resp.Body, err)
	}
	if f.Type == wsproto.TypeError && f.Message == "" {
		t.Errorf("error frame %q has no message for the human", resp.Body)
	}
	return f
}

func storedTopics(t *testing.T, s *store.Memory) []string {
	t.Helper()
	topics, err := s.Topics(context.Background(), connID)
	if err != nil {
		t.Fatalf("read back topics: %v", err)
	}
	slices.Sort(topics)
	return topics
}

func TestConnect(t *testing.T) {
	t.Parallel()
	connectedAt := time.UnixMilli(1705751697419)
	now := time.Date(2024, 1, 20, 12, 0, 0, 0, time.UTC)
	refuse := func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
		return Grant{}, errors.New("token expired")
	}
	grant := func(_ context.Context, req events.APIGatewayWebsocketProxyRequest) (Grant, error) {
		if req.QueryStringParameters["token"] != "t0ken" {
			return Grant{}, errors.New("no token")
		}
		return Grant{Subject: "user-7", Topics: []string{"orders.*"}}, nil
	}
	tests := []struct {
		name       string
		edit       func(*events.APIGatewayWebsocketProxyRequest)
		auth       func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error)
		failing    []string
		wantStatus int
		wantErr    bool
		want       *store.Connection // nil: nothing stored
	}{
		{
			name:       "records the connection",
			wantStatus: http.StatusOK,
			want: &store.Connection{ID: connID, ConnectedAt: connectedAt, SourceIP: "49.105.91.154",
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/118.0.0.0"},
		},
		{
			name:       "no connectedAt: stamped now",
			edit:       func(ev *events.APIGatewayWebsocketProxyRequest) { ev.RequestContext.ConnectedAt = 0 },
			wantStatus: http.StatusOK,
			want: &store.Connection{ID: connID, ConnectedAt: now, SourceIP: "49.105.91.154",
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/118.0.0.0"},
		},
		{
			name:       "grant is recorded",
			auth:       grant,
			wantStatus: http.StatusOK,
			want: &store.Connection{ID: connID, ConnectedAt: connectedAt, Subject: "user-7", SourceIP: "49.105.91.154",
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/118.0.0.0", AllowedTopics: []string{"orders.*"}},
		},
		{name: "refused by auth: 401, nothing stored", auth: refuse, wantStatus: http.StatusUnauthorized},
		// A sub the publisher could not address as a user is refused like
		// a bad token, and nothing is stored.
		{name: "sub too long: 401", auth: grantSubject(strings.Repeat("u", store.MaxUserIDLen+1)), wantStatus: http.StatusUnauthorized},
		{name: "sub with a control character: 401", auth: grantSubject("alice\r\n"), wantStatus: http.StatusUnauthorized},
		{name: "sub not UTF-8: 401", auth: grantSubject("al\xffice"), wantStatus: http.StatusUnauthorized},
		{name: "empty sub: 401", auth: grantSubject(""), wantStatus: http.StatusUnauthorized},
		{
			name:       "longest sub is a user",
			auth:       grantSubject(strings.Repeat("u", store.MaxUserIDLen)),
			wantStatus: http.StatusOK,
			want: &store.Connection{ID: connID, ConnectedAt: connectedAt, Subject: strings.Repeat("u", store.MaxUserIDLen), SourceIP: "49.105.91.154",
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/118.0.0.0", AllowedTopics: []string{}},
		},
		{name: "store unavailable: 500, client retries", failing: []string{"PutConnection"}, wantStatus: http.StatusInternalServerError},
		{
			name:       "no connection id: not from API Gateway",
			edit:       func(ev *events.APIGatewayWebsocketProxyRequest) { ev.RequestContext.ConnectionID = "" },
			wantStatus: http.StatusBadRequest,
			wantErr:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mem := store.NewMemory()
			r := NewRoutes(outage{mem, tt.failing}, discard())
			r.Now = func() time.Time { return now }
			r.Authenticate = tt.auth
			ev := decodeEvent(t, connectEvent)
			if tt.edit != nil {
				tt.edit(&ev)
			}

			resp, err := r.Connect(context.Background(), ev)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			got, err := mem.GetConnection(context.Background(), connID)
			// The connection is its user's (if it has one), and only then.
			var wantUser []string
			if tt.want != nil && tt.want.Subject != "" {
				wantUser = []string{connID}
			}
			for _, user := range []string{"user-7", strings.Repeat("u", store.MaxUserIDLen)} {
				page, err := mem.UserConnections(context.Background(), user, 10, "")
				if err != nil {
					t.Fatal(err)
				}
				want := wantUser
				if tt.want == nil || tt.want.Subject != user {
					want = nil
				}
				if !slices.Equal(page.ConnectionIDs, want) {
					t.Errorf("UserConnections(%.10q) = %q, want %q", user, page.ConnectionIDs, want)
				}
			}
			if tt.want == nil {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("stored %+v (err %v), want nothing stored", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("read back connection: %v", err)
			}
			if !got.ConnectedAt.Equal(tt.want.ConnectedAt) {
				t.Errorf("ConnectedAt = %v, want %v", got.ConnectedAt, tt.want.ConnectedAt)
			}
			if (got.AllowedTopics == nil) != (tt.want.AllowedTopics == nil) {
				t.Errorf("AllowedTopics = %#v, want %#v: nil grants every topic", got.AllowedTopics, tt.want.AllowedTopics)
			}
			got.ConnectedAt, tt.want.ConnectedAt = time.Time{}, time.Time{}
			if fmt.Sprint(got) != fmt.Sprint(*tt.want) {
				t.Errorf("stored %+v\nwant   %+v", got, *tt.want)
			}
		})
	}
}

// grantSubject admits every connection as sub, to no topic.
func grantSubject(sub string) func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
	return func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
		return Grant{Subject: sub, Topics: []string{}}, nil
	}
}

// A user's connection, through the routes: $connect makes it the user's,
// subscribe puts the user on its subscriptions (so a topic counts its
// users), and $disconnect takes it from the user.
func TestRoutesRecordTheUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := store.NewMemory()
	r := NewRoutes(mem, discard())
	r.Authenticate = func(_ context.Context, req events.APIGatewayWebsocketProxyRequest) (Grant, error) {
		return Grant{Subject: req.QueryStringParameters["token"], Topics: []string{"news"}}, nil
	}
	connect := func(id, user string) {
		t.Helper()
		ev := decodeEvent(t, connectEvent)
		ev.RequestContext.ConnectionID = id
		ev.QueryStringParameters = map[string]string{"token": user}
		if resp, err := r.Connect(ctx, ev); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("connect %s as %s: %d, %v", id, user, resp.StatusCode, err)
		}
		sub := message(t, "subscribe", `{"action":"subscribe","topic":"news"}`)
		sub.RequestContext.ConnectionID = id
		resp, err := r.Subscribe(ctx, sub)
		if f := answered(t, resp, err); f.Type != "subscribed" {
			t.Fatalf("subscribe %s: %+v", id, f)
		}
	}
	connect("a1", "alice")
	connect("a2", "alice")
	connect("b1", "bob")

	page, err := mem.UserConnections(ctx, "alice", 10, "")
	if err != nil || !slices.Equal(page.ConnectionIDs, []string{"a1", "a2"}) {
		t.Errorf("UserConnections(alice) = %+v, %v; want a1, a2", page, err)
	}
	subs, err := mem.Subscribers(ctx, "news", 10, "")
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, s := range subs.Subscriptions {
		users = append(users, s.ConnectionID+"="+s.UserID)
	}
	if want := []string{"a1=alice", "a2=alice", "b1=bob"}; !slices.Equal(users, want) {
		t.Errorf("Subscribers(news) users %q, want %q", users, want)
	}
	if conns, n, err := mem.CountSubscribers(ctx, "news"); err != nil || conns != 3 || n != 2 {
		t.Errorf("CountSubscribers(news) = %d, %d, %v; want 3 connections of 2 users", conns, n, err)
	}

	ev := decodeEvent(t, disconnectEvent)
	ev.RequestContext.ConnectionID = "a1"
	if resp, err := r.Disconnect(ctx, ev); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("disconnect a1: %d, %v", resp.StatusCode, err)
	}
	if page, err := mem.UserConnections(ctx, "alice", 10, ""); err != nil || !slices.Equal(page.ConnectionIDs, []string{"a2"}) {
		t.Errorf("after a1 disconnected: UserConnections(alice) = %+v, %v; want a2", page, err)
	}
	if conns, n, err := mem.CountSubscribers(ctx, "news"); err != nil || conns != 2 || n != 2 {
		t.Errorf("after a1 disconnected: CountSubscribers(news) = %d, %d, %v; want 2 connections of 2 users", conns, n, err)
	}
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		recorded   bool
		connID     string
		failing    []string
		wantStatus int
		wantErr    error
		wantGone   bool // connection and subscriptions deleted
	}{
		{name: "forgets connection and subscriptions", recorded: true, connID: connID, wantStatus: http.StatusOK, wantGone: true},
		{name: "unknown connection is fine", connID: connID, wantStatus: http.StatusOK, wantGone: true},
		{name: "store unavailable: error for Lambda to report", recorded: true, connID: connID,
			failing: []string{"DeleteConnection"}, wantStatus: http.StatusInternalServerError, wantErr: store.ErrUnavailable},
		{name: "no connection id", recorded: true, connID: "", wantStatus: http.StatusBadRequest, wantErr: errNoConnectionID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			mem := store.NewMemory()
			if tt.recorded {
				if err := mem.PutConnection(ctx, store.Connection{ID: connID, ConnectedAt: time.Now()}); err != nil {
					t.Fatal(err)
				}
				if err := mem.Subscribe(ctx, connID, "", []string{"a", "b"}); err != nil {
					t.Fatal(err)
				}
			}
			ev := decodeEvent(t, disconnectEvent)
			ev.RequestContext.ConnectionID = tt.connID

			resp, err := NewRoutes(outage{mem, tt.failing}, discard()).Disconnect(ctx, ev)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			_, getErr := mem.GetConnection(ctx, connID)
			topics := storedTopics(t, mem)
			if gone := errors.Is(getErr, store.ErrNotFound) && len(topics) == 0; gone != tt.wantGone {
				t.Errorf("connection gone = %v (get: %v, topics: %q), want %v", gone, getErr, topics, tt.wantGone)
			}
		})
	}
}

// topicsCase is a subscribe or unsubscribe frame from a recorded connection
// (unless unregistered) and what it must answer and leave stored.
type topicsCase struct {
	name         string
	body         string
	allowed      []string // the connection's grant
	unregistered bool
	failing      []string
	want         frame
	wantStored   []string
}

type route func(*Routes, context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)

func testTopicsRoute(t *testing.T, routeKey string, call route, subscribed []string, tests []topicsCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			mem := store.NewMemory()
			if !tt.unregistered {
				if err := mem.PutConnection(ctx, store.Connection{ID: connID, ConnectedAt: time.Now(), AllowedTopics: tt.allowed}); err != nil {
					t.Fatal(err)
				}
				if err := mem.Subscribe(ctx, connID, "", subscribed); err != nil {
					t.Fatal(err)
				}
			}
			r := NewRoutes(outage{mem, tt.failing}, discard())

			resp, err := call(r, ctx, message(t, routeKey, tt.body))
			got := answered(t, resp, err)
			if got.Type != tt.want.Type || got.Code != tt.want.Code || !slices.Equal(got.Topics, tt.want.Topics) {
				t.Errorf("answer = %+v, want %+v", got, tt.want)
			}
			if stored := storedTopics(t, mem); !slices.Equal(stored, tt.wantStored) {
				t.Errorf("stored topics %q, want %q", stored, tt.wantStored)
			}
		})
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	testTopicsRoute(t, "subscribe", (*Routes).Subscribe, nil, []topicsCase{
		{
			name:       "topics",
			body:       `{"action":"subscribe","topics":["orders.1","news"]}`,
			want:       frame{Type: "subscribed", Topics: []string{"orders.1", "news"}},
			wantStored: []string{"news", "orders.1"},
		},
		{
			name:       "single topic shorthand",
			body:       `{"action":"subscribe","topic":"news"}`,
			want:       frame{Type: "subscribed", Topics: []string{"news"}},
			wantStored: []string{"news"},
		},
		{
			name:       "duplicates collapse",
			body:       `{"action":"subscribe","topic":"news","topics":["a","news","a"]}`,
			want:       frame{Type: "subscribed", Topics: []string{"news", "a"}},
			wantStored: []string{"a", "news"},
		},
		{
			name:       "within the grant",
			body:       `{"action":"subscribe","topics":["orders.1","news"]}`,
			allowed:    []string{"orders.*", "news"},
			want:       frame{Type: "subscribed", Topics: []string{"orders.1", "news"}},
			wantStored: []string{"news", "orders.1"},
		},
		{
			name:    "one topic outside the grant refuses all",
			body:    `{"action":"subscribe","topics":["orders.1","billing"]}`,
			allowed: []string{"orders.*"},
			want:    frame{Type: "error", Code: "forbidden"},
		},
		{
			name:    "empty grant refuses everything",
			body:    `{"action":"subscribe","topic":"news"}`,
			allowed: []string{},
			want:    frame{Type: "error", Code: "forbidden"},
		},
		{name: "not JSON", body: `subscribe news`, want: frame{Type: "error", Code: "bad_request"}},
		{name: "topics not a list", body: `{"action":"subscribe","topics":"news"}`, want: frame{Type: "error", Code: "bad_request"}},
		{name: "no topics", body: `{"action":"subscribe"}`, want: frame{Type: "error", Code: "invalid_topic"}},
		{name: "empty topic list", body: `{"action":"subscribe","topics":[]}`, want: frame{Type: "error", Code: "bad_request"}},
		{name: "invalid name refuses all", body: `{"action":"subscribe","topics":["news","bad topic"]}`, want: frame{Type: "error", Code: "invalid_topic"}},
		{name: "name too long", body: `{"action":"subscribe","topic":"` + strings.Repeat("x", 129) + `"}`, want: frame{Type: "error", Code: "invalid_topic"}},
		{
			name: "too many topics",
			body: `{"action":"subscribe","topics":["t` + strings.Repeat(`","t`, wsproto.MaxTopicsPerRequest) + `"]}`,
			want: frame{Type: "error", Code: "limit_exceeded"},
		},
		{name: "unregistered connection", body: `{"action":"subscribe","topic":"news"}`, unregistered: true, want: frame{Type: "error", Code: "bad_request"}},
		{name: "store unavailable on lookup", body: `{"action":"subscribe","topic":"news"}`, failing: []string{"GetConnection"}, want: frame{Type: "error", Code: "unavailable"}},
		{name: "store unavailable on write", body: `{"action":"subscribe","topic":"news"}`, failing: []string{"Subscribe"}, want: frame{Type: "error", Code: "unavailable"}},
	})
}

func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	testTopicsRoute(t, "unsubscribe", (*Routes).Unsubscribe, []string{"a", "b", "c"}, []topicsCase{
		{
			name:       "topics",
			body:       `{"action":"unsubscribe","topics":["a","c"]}`,
			want:       frame{Type: "unsubscribed", Topics: []string{"a", "c"}},
			wantStored: []string{"b"},
		},
		{
			name:       "unknown topic is ignored",
			body:       `{"action":"unsubscribe","topic":"zzz"}`,
			want:       frame{Type: "unsubscribed", Topics: []string{"zzz"}},
			wantStored: []string{"a", "b", "c"},
		},
		{name: "not JSON", body: `{"action":`, want: frame{Type: "error", Code: "bad_request"}, wantStored: []string{"a", "b", "c"}},
		{name: "no topics", body: `{"action":"unsubscribe"}`, want: frame{Type: "error", Code: "invalid_topic"}, wantStored: []string{"a", "b", "c"}},
		{name: "invalid name removes nothing", body: `{"action":"unsubscribe","topics":["a","b c"]}`, want: frame{Type: "error", Code: "invalid_topic"}, wantStored: []string{"a", "b", "c"}},
		{name: "store unavailable", body: `{"action":"unsubscribe","topic":"a"}`, failing: []string{"Unsubscribe"}, want: frame{Type: "error", Code: "unavailable"}, wantStored: []string{"a", "b", "c"}},
	})
}

func TestDefault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		want        frame
		wantMessage string // a substring of the error message
	}{
		{name: "ping fallback", body: `{"action":"ping"}`, want: frame{Type: "pong"}},
		{name: "not JSON", body: `hello`, want: frame{Type: "error", Code: "bad_request"}},
		{name: "empty frame", body: ``, want: frame{Type: "error", Code: "bad_request"}},
		{name: "not an object", body: `["subscribe"]`, want: frame{Type: "error", Code: "bad_request"}},
		{name: "action not a string", body: `{"action":7}`, want: frame{Type: "error", Code: "bad_request"}},
		{name: "missing action", body: `{"topics":["a"]}`, want: frame{Type: "error", Code: "unknown_action"}, wantMessage: `"action"`},
		{name: "unknown action is named", body: `{"action":"sendmessage","data":"hi"}`, want: frame{Type: "error", Code: "unknown_action"}, wantMessage: `"sendmessage"`},
		{
			name:        "long action is clipped",
			body:        `{"action":"` + strings.Repeat("é", 100) + `"}`,
			want:        frame{Type: "error", Code: "unknown_action"},
			wantMessage: `"` + strings.Repeat("é", 20) + `…"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mem := store.NewMemory()
			r := NewRoutes(mem, discard())

			resp, err := r.Default(context.Background(), message(t, "$default", tt.body))
			got := answered(t, resp, err)
			if got.Type != tt.want.Type || got.Code != tt.want.Code {
				t.Errorf("answer = %+v, want %+v", got, tt.want)
			}
			if !strings.Contains(got.Message, tt.wantMessage) {
				t.Errorf("message %q does not contain %q", got.Message, tt.wantMessage)
			}
			if stored := storedTopics(t, mem); len(stored) != 0 {
				t.Errorf("stored topics %q, want none", stored)
			}
		})
	}
}

// A MESSAGE event without a connection id did not come from API Gateway:
// nothing is stored and the invocation fails.
func TestMessageRoutesNeedConnectionID(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	r := NewRoutes(mem, discard())
	routes := map[string]route{"subscribe": (*Routes).Subscribe, "unsubscribe": (*Routes).Unsubscribe, "$default": (*Routes).Default}
	for name, call := range routes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev := message(t, name, `{"action":"subscribe","topic":"news"}`)
			ev.RequestContext.ConnectionID = ""
			if _, err := call(r, context.Background(), ev); !errors.Is(err, errNoConnectionID) {
				t.Errorf("err = %v, want %v", err, errNoConnectionID)
			}
		})
	}
	if stored := storedTopics(t, mem); len(stored) != 0 {
		t.Errorf("stored topics %q, want none", stored)
	}
}
