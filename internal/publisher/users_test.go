package publisher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/store"
)

// recordingAPI stands in for the management API: it records every post
// and close, and answers 410 for a connection it was told is gone.
type recordingAPI struct {
	mu     sync.Mutex
	posts  map[string][]string
	closes []string
	gone   map[string]bool
}

func (a *recordingAPI) PostToConnection(_ context.Context, id string, data []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone[id] {
		return apigw.ErrGone
	}
	if a.posts == nil {
		a.posts = map[string][]string{}
	}
	a.posts[id] = append(a.posts[id], string(data))
	return nil
}

func (a *recordingAPI) DeleteConnection(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone[id] {
		return apigw.ErrGone
	}
	a.closes = append(a.closes, id)
	return nil
}

// calls is how many posts and closes were made.
func (a *recordingAPI) calls() (posts, closes int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.posts {
		posts += len(p)
	}
	return posts, len(a.closes)
}

func (a *recordingAPI) postedTo() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for id := range a.posts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// startUsersEdge is an edge over a store holding alice's three connections
// and bob's one, all subscribed to "orders".
func startUsersEdge(t *testing.T) (*edge, *recordingAPI) {
	t.Helper()
	api := &recordingAPI{}
	e := startEdge(t, edgeOptions{mgmt: api})
	for _, c := range []struct{ id, user string }{{"alice-1", "alice"}, {"alice-2", "alice"}, {"alice-3", "alice"}, {"bob-1", "bob"}} {
		if err := e.store.PutConnection(t.Context(), store.Connection{ID: c.id, Subject: c.user, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Subscribe(t.Context(), c.id, c.user, []string{"orders"}); err != nil {
			t.Fatal(err)
		}
	}
	return e, api
}

// call sends a REST call with the test key and returns its status and body.
func (e *edge) call(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearer(testKey))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func authed(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", bearer(testKey))
}

// The four user and multi-topic calls over gRPC and REST, end to end
// through the real fan-out and store: each reaches whom it names.
func TestUserCallsOverGRPCAndREST(t *testing.T) {
	t.Parallel()
	e, api := startUsersEdge(t)
	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	ctx := authed(t)

	count, err := client.CountSubscribers(ctx, &wsgatewayv1.CountSubscribersRequest{Topic: "orders"})
	if err != nil || count.GetConnections() != 4 || count.GetUsers() != 2 {
		t.Errorf("CountSubscribers = %v, %v; want 4 connections, 2 users", count, err)
	}
	// Routed to CountSubscribers, not swallowed by .../subscribers.
	if code, body := e.call(t, http.MethodGet, "/v1/topics/orders/subscribers:count", ""); code != 200 || !jsonEqual(body, `{"connections":4,"users":2}`) {
		t.Errorf("GET subscribers:count = %d %s", code, body)
	}
	list, err := client.ListSubscribers(ctx, &wsgatewayv1.ListSubscribersRequest{Topic: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.GetSubscribers() {
		if want, _, _ := strings.Cut(s.GetConnectionId(), "-"); s.GetUserId() != want {
			t.Errorf("subscriber %s has user %q, want %q", s.GetConnectionId(), s.GetUserId(), want)
		}
	}

	sent, err := client.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{UserId: "alice", Data: structpb.NewNumberValue(1)})
	if err != nil || sent.GetDelivered() != 3 || sent.GetMessageId() == "" {
		t.Errorf("SendToUser(alice) = %v, %v; want 3 delivered", sent, err)
	}
	if got := api.postedTo(); !slices.Equal(got, []string{"alice-1", "alice-2", "alice-3"}) {
		t.Errorf("posted to %v, want alice's three", got)
	}
	code, body := e.call(t, http.MethodPost, "/v1/users/bob:send", `{"data":{"hi":true},"attributes":{"k":"v"},"idempotencyKey":"b1"}`)
	var sendResp struct {
		MessageID string `json:"messageId"`
		Delivered int    `json:"delivered"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal(body, &sendResp); code != 200 || err != nil || sendResp.Delivered != 1 {
		t.Errorf("POST /v1/users/bob:send = %d %s", code, body)
	}
	if _, again := e.call(t, http.MethodPost, "/v1/users/bob:send", `{"data":{"hi":true},"idempotencyKey":"b1"}`); !strings.Contains(string(again), `"duplicate":true`) ||
		!strings.Contains(string(again), sendResp.MessageID) {
		t.Errorf("repeat with the same key = %s, want a duplicate of %s", again, sendResp.MessageID)
	}

	code, body = e.call(t, http.MethodPost, "/v1/topics:broadcast", `{"topics":["orders","nobody"],"data":"all"}`)
	var bc struct {
		Results []struct {
			Topic     string `json:"topic"`
			MessageID string `json:"messageId"`
			Offset    string `json:"offset"`
			Delivered int    `json:"delivered"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &bc); code != 200 || err != nil || len(bc.Results) != 2 ||
		bc.Results[0].Topic != "orders" || bc.Results[0].Delivered != 4 || bc.Results[0].Offset != "1" ||
		bc.Results[1].Topic != "nobody" || bc.Results[1].Delivered != 0 || bc.Results[0].MessageID == bc.Results[1].MessageID {
		t.Errorf("POST /v1/topics:broadcast = %d %s", code, body)
	}

	if code, body := e.call(t, http.MethodPost, "/v1/connections/alice-1:disconnect", `{"reason":"moved"}`); code != 200 || !jsonEqual(body, `{"disconnected":1}`) {
		t.Errorf("disconnect alice-1 = %d %s", code, body)
	}
	d, err := client.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{UserId: "alice", Reason: "signed out"})
	if err != nil || d.GetDisconnected() != 2 {
		t.Errorf("Disconnect(alice) = %v, %v; want the 2 left", d, err)
	}
	if code, body := e.call(t, http.MethodPost, "/v1/users/alice:disconnect", `{}`); code != 200 || !jsonEqual(body, `{"disconnected":0}`) {
		t.Errorf("disconnect alice again = %d %s, want 0", code, body)
	}
	if code, body := e.call(t, http.MethodPost, "/v1/connections/nobody:disconnect", `{}`); code != 200 || !jsonEqual(body, `{"disconnected":0}`) {
		t.Errorf("disconnect an unknown connection = %d %s, want 0", code, body)
	}
	if c, u, _ := e.store.CountSubscribers(t.Context(), "orders"); c != 1 || u != 1 {
		t.Errorf("after the disconnects orders has %d connections, %d users; want bob's", c, u)
	}
}

// Every bad request of the new calls is InvalidArgument (400 over REST)
// naming the problem, and nothing is posted, closed or removed.
func TestBadUserRequestsDeliverAndRemoveNothing(t *testing.T) {
	t.Parallel()
	e, api := startUsersEdge(t)
	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	ctx := authed(t)
	long := strings.Repeat("u", 129)
	data := structpb.NewNumberValue(1)
	var topics101 []string
	for i := range 101 {
		topics101 = append(topics101, fmt.Sprintf("t%d", i))
	}
	grpcCases := []struct {
		name string
		call func() error
		want string
	}{
		{"send: no user", func() error { _, err := client.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{Data: data}); return err }, "empty user id"},
		{"send: user over 128 bytes", func() error {
			_, err := client.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{UserId: long, Data: data})
			return err
		}, "longer than 128 bytes"},
		{"send: no data", func() error {
			_, err := client.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{UserId: "alice"})
			return err
		}, "data is required"},
		{"disconnect: neither", func() error { _, err := client.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{}); return err }, "give a connection id or a user id"},
		{"disconnect: both", func() error {
			_, err := client.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{ConnectionId: "alice-1", UserId: "alice"})
			return err
		}, "not both"},
		{"disconnect: long reason", func() error {
			_, err := client.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{UserId: "alice", Reason: strings.Repeat("r", 257)})
			return err
		}, "at most 256"},
		{"disconnect: user over 128 bytes", func() error {
			_, err := client.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{UserId: long})
			return err
		}, "longer than 128 bytes"},
		{"count: bad topic", func() error {
			_, err := client.CountSubscribers(ctx, &wsgatewayv1.CountSubscribersRequest{Topic: "no spaces"})
			return err
		}, "invalid topic"},
		{"broadcast: no topic", func() error { _, err := client.Broadcast(ctx, &wsgatewayv1.BroadcastRequest{Data: data}); return err }, "at least one topic"},
		{"broadcast: 101 topics", func() error {
			_, err := client.Broadcast(ctx, &wsgatewayv1.BroadcastRequest{Topics: topics101, Data: data})
			return err
		}, "101 topics, at most 100"},
		{"broadcast: duplicate", func() error {
			_, err := client.Broadcast(ctx, &wsgatewayv1.BroadcastRequest{Topics: []string{"orders", "orders"}, Data: data})
			return err
		}, "repeats"},
		{"broadcast: one invalid topic", func() error {
			_, err := client.Broadcast(ctx, &wsgatewayv1.BroadcastRequest{Topics: []string{"orders", "bad/topic"}, Data: data})
			return err
		}, "topics[1]: invalid topic"},
		{"broadcast: no data", func() error {
			_, err := client.Broadcast(ctx, &wsgatewayv1.BroadcastRequest{Topics: []string{"orders"}})
			return err
		}, "data is required"},
	}
	for _, tc := range grpcCases {
		if st := status.Convert(tc.call()); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
			t.Errorf("gRPC %s = %v %q, want InvalidArgument saying %q", tc.name, st.Code(), st.Message(), tc.want)
		}
	}

	restCases := []struct {
		name, method, path, body, want string
	}{
		{"send: user over 128 bytes", http.MethodPost, "/v1/users/" + long + ":send", `{"data":1}`, "longer than 128 bytes"},
		{"send: no data", http.MethodPost, "/v1/users/alice:send", `{}`, "data is required"},
		{"send: unknown field", http.MethodPost, "/v1/users/alice:send", `{"data":1,"topic":"x"}`, `unknown field "topic"`},
		{"disconnect: both", http.MethodPost, "/v1/connections/alice-1:disconnect", `{"userId":"alice"}`, "not both"},
		{"disconnect: long reason", http.MethodPost, "/v1/users/alice:disconnect", `{"reason":"` + strings.Repeat("r", 257) + `"}`, "at most 256"},
		{"count: bad topic", http.MethodGet, "/v1/topics/a%20b/subscribers:count", "", "invalid topic"},
		{"broadcast: 101 topics", http.MethodPost, "/v1/topics:broadcast", `{"topics":["` + strings.Join(topics101, `","`) + `"],"data":1}`, "at most 100"},
		{"broadcast: duplicate", http.MethodPost, "/v1/topics:broadcast", `{"topics":["orders","x","orders"],"data":1}`, "repeats"},
		{"broadcast: no topics", http.MethodPost, "/v1/topics:broadcast", `{"data":1}`, "at least one topic"},
		{"broadcast: no data", http.MethodPost, "/v1/topics:broadcast", `{"topics":["orders"]}`, "data is required"},
	}
	for _, tc := range restCases {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		r := e.do(t, tc.method, tc.path, body, bearer(testKey))
		if r.Status != http.StatusBadRequest || r.Code != codes.InvalidArgument || !strings.Contains(r.Message, tc.want) {
			t.Errorf("REST %s = %d %v %q, want 400 saying %q", tc.name, r.Status, r.Code, r.Message, tc.want)
		}
	}

	if posts, closes := api.calls(); posts != 0 || closes != 0 {
		t.Errorf("%d posts, %d closes: want none from refused requests", posts, closes)
	}
	if c, u, _ := e.store.CountSubscribers(t.Context(), "orders"); c != 4 || u != 2 {
		t.Errorf("orders has %d connections, %d users; want all 4 and 2 kept", c, u)
	}
	if _, pos, _ := e.store.History(t.Context(), "orders", 0, 1); pos.Offset != 0 {
		t.Errorf("orders took offset %d from a refused broadcast", pos.Offset)
	}
}

// The new calls pass the same interceptors as Publish: without the API
// key they are refused, and do nothing.
func TestUserCallsNeedTheAPIKey(t *testing.T) {
	t.Parallel()
	e, api := startUsersEdge(t)
	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	if _, err := client.Disconnect(t.Context(), &wsgatewayv1.DisconnectRequest{UserId: "alice"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC Disconnect without a key = %v, want Unauthenticated", err)
	}
	if _, err := client.SendToUser(t.Context(), &wsgatewayv1.SendToUserRequest{UserId: "alice", Data: structpb.NewNumberValue(1)}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC SendToUser without a key = %v, want Unauthenticated", err)
	}
	for _, p := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/users/alice:send", `{"data":1}`},
		{http.MethodPost, "/v1/users/alice:disconnect", `{}`},
		{http.MethodPost, "/v1/connections/alice-1:disconnect", `{}`},
		{http.MethodPost, "/v1/topics:broadcast", `{"topics":["orders"],"data":1}`},
		{http.MethodGet, "/v1/topics/orders/subscribers:count", ""},
	} {
		var body io.Reader
		if p.body != "" {
			body = strings.NewReader(p.body)
		}
		if r := e.do(t, p.method, p.path, body, bearer("wrong")); r.Status != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong key = %d, want 401", p.method, p.path, r.Status)
		}
	}
	if posts, closes := api.calls(); posts != 0 || closes != 0 {
		t.Errorf("%d posts, %d closes without a key", posts, closes)
	}
}

// The REST guards cover the new routes: a wrong method is 405 with Allow.
func TestUserRoutesWrongMethod(t *testing.T) {
	t.Parallel()
	e, _ := startUsersEdge(t)
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodGet, "/v1/topics:broadcast", http.MethodPost},
		{http.MethodPost, "/v1/topics/orders/subscribers:count", http.MethodGet},
		{http.MethodDelete, "/v1/topics/orders/subscribers:count", http.MethodGet},
		{http.MethodGet, "/v1/users/alice:send", http.MethodPost},
		{http.MethodDelete, "/v1/users/alice:disconnect", http.MethodPost},
		{http.MethodPut, "/v1/connections/alice-1:disconnect", http.MethodPost},
	} {
		r := e.do(t, tc.method, tc.path, nil, bearer(testKey))
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d, Allow %q; want 405, Allow %q", tc.method, tc.path, r.Status, r.Header.Get("Allow"), tc.allow)
		}
	}
}

// A connection the management API reports gone is cleaned up by the next
// send to its user: gone 1, and the user no longer has it.
func TestSendToUserForgetsAGoneConnection(t *testing.T) {
	t.Parallel()
	e, api := startUsersEdge(t)
	api.mu.Lock()
	api.gone = map[string]bool{"alice-2": true}
	api.mu.Unlock()
	code, body := e.call(t, http.MethodPost, "/v1/users/alice:send", `{"data":1}`)
	if code != 200 || !strings.Contains(string(body), `"delivered":2`) || !strings.Contains(string(body), `"gone":1`) {
		t.Errorf("send = %d %s, want 2 delivered, 1 gone", code, body)
	}
	page, err := e.store.UserConnections(t.Context(), "alice", 10, "")
	if err != nil || !slices.Equal(page.ConnectionIDs, []string{"alice-1", "alice-3"}) {
		t.Errorf("alice's connections = %v, %v; want alice-2 forgotten", page.ConnectionIDs, err)
	}
}
