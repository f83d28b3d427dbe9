package publisher_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/store"
)

// ListSubscribers and CountSubscribers of a pattern report that pattern's
// own subscribers (not those of the topics it matches), over gRPC and
// REST; a page token of the pattern pages it.
func TestSubscribersOfAPattern(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{mgmt: &recordingAPI{}})
	for _, c := range []struct {
		id, user string
		names    []string
	}{
		{"c1", "alice", []string{"orders.*", "orders.eu"}},
		{"c2", "alice", []string{"orders.*"}},
		{"c3", "bob", []string{"orders.*", "*"}},
		{"c4", "carol", []string{"orders.eu"}},
	} {
		if err := e.store.PutConnection(t.Context(), store.Connection{ID: c.id, Subject: c.user, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Subscribe(t.Context(), c.id, c.user, c.names); err != nil {
			t.Fatal(err)
		}
	}
	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	ctx := authed(t)

	for name, want := range map[string][2]int32{"orders.*": {3, 2}, "*": {1, 1}, "orders.eu.*": {0, 0}} {
		count, err := client.CountSubscribers(ctx, &wsgatewayv1.CountSubscribersRequest{Topic: name})
		if err != nil || count.GetConnections() != want[0] || count.GetUsers() != want[1] {
			t.Errorf("CountSubscribers(%s) = %v, %v; want %d connections, %d users", name, count, err, want[0], want[1])
		}
	}
	var listed []string
	token := ""
	for {
		list, err := client.ListSubscribers(ctx, &wsgatewayv1.ListSubscribersRequest{Topic: "orders.*", PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list.GetSubscribers() {
			listed = append(listed, s.GetConnectionId())
		}
		if token = list.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.Equal(listed, []string{"c1", "c2", "c3"}) {
		t.Errorf("ListSubscribers(orders.*) = %q, want c1 c2 c3", listed)
	}

	for _, tc := range []struct{ path, want string }{
		{"/v1/topics/orders.*/subscribers:count", `{"connections":3,"users":2}`},
		{"/v1/topics/*/subscribers:count", `{"connections":1,"users":1}`},
		{"/v1/topics/%2A/subscribers:count", `{"connections":1,"users":1}`},
	} {
		if code, body := e.call(t, http.MethodGet, tc.path, ""); code != 200 || !jsonEqual(body, tc.want) {
			t.Errorf("GET %s = %d %s, want %s", tc.path, code, body, tc.want)
		}
	}
	if code, body := e.call(t, http.MethodGet, "/v1/topics/*/subscribers", ""); code != 200 || !strings.Contains(string(body), `"c3"`) || strings.Contains(string(body), `"c1"`) {
		t.Errorf("GET /v1/topics/*/subscribers = %d %s, want c3 alone", code, body)
	}
}

// A pattern where one topic is needed (publish, broadcast, history) and a
// malformed pattern anywhere: INVALID_ARGUMENT (400), saying why, with
// nothing delivered or stored.
func TestPatternsRefusedWhereATopicIsNeeded(t *testing.T) {
	t.Parallel()
	api := &recordingAPI{}
	e := startEdge(t, edgeOptions{mgmt: api})
	for _, id := range []string{"c1", "c2"} {
		if err := e.store.PutConnection(t.Context(), store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Subscribe(t.Context(), id, "", []string{"orders.eu", "orders.*", "*"}); err != nil {
			t.Fatal(err)
		}
	}
	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	ctx := authed(t)
	data := structpb.NewNumberValue(1)

	grpcCases := []struct {
		name string
		call func() error
		want string
	}{
		{"publish to a pattern", func() error {
			_, err := client.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "orders.*", Data: data})
			return err
		}, "is a pattern"},
		{"publish to the star", func() error {
			_, err := client.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "*", Data: data})
			return err
		}, "is a pattern"},
		{"broadcast with a pattern", func() error {
			_, err := client.Broadcast(ctx, &wsgatewayv1.BroadcastRequest{Topics: []string{"orders.eu", "orders.*"}, Data: data})
			return err
		}, "topics[1]: invalid topic"},
		{"history of a pattern", func() error {
			_, err := client.History(ctx, &wsgatewayv1.HistoryRequest{Topic: "orders.*"})
			return err
		}, "is a pattern"},
	}
	for _, bad := range []string{"a*", "a.*.b", "*.a", "a.**", ""} {
		for _, rpc := range []string{"count", "list"} {
			grpcCases = append(grpcCases, struct {
				name string
				call func() error
				want string
			}{rpc + " " + bad, func() error {
				var err error
				if rpc == "count" {
					_, err = client.CountSubscribers(ctx, &wsgatewayv1.CountSubscribersRequest{Topic: bad})
				} else {
					_, err = client.ListSubscribers(ctx, &wsgatewayv1.ListSubscribersRequest{Topic: bad})
				}
				return err
			}, "invalid topic"})
		}
	}
	for _, tc := range grpcCases {
		if st := status.Convert(tc.call()); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
			t.Errorf("gRPC %s = %v %q, want InvalidArgument saying %q", tc.name, st.Code(), st.Message(), tc.want)
		}
	}

	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/topics/orders.*:publish", `{"data":1}`},
		{http.MethodPost, "/v1/topics/%2A:publish", `{"data":1}`},
		{http.MethodPost, "/v1/topics:broadcast", `{"topics":["orders.eu","*"],"data":1}`},
		{http.MethodGet, "/v1/topics/orders.*/history", ""},
		{http.MethodGet, "/v1/topics/a*/subscribers:count", ""},
		{http.MethodGet, "/v1/topics/a.*.b/subscribers", ""},
		{http.MethodGet, "/v1/topics/a.**/subscribers:count", ""},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		r := e.do(t, tc.method, tc.path, body, bearer(testKey))
		if r.Status != http.StatusBadRequest || r.Code != codes.InvalidArgument || !strings.Contains(r.Message, "invalid topic") {
			t.Errorf("REST %s %s = %d %v %q, want 400 invalid topic", tc.method, tc.path, r.Status, r.Code, r.Message)
		}
	}

	if posts, _ := api.calls(); posts != 0 {
		t.Errorf("%d posts: want none from refused requests", posts)
	}
	if _, pos, _ := e.store.History(t.Context(), "orders.eu", 0, 1); pos.Offset != 0 {
		t.Errorf("orders.eu took offset %d from a refused broadcast", pos.Offset)
	}
	if c, _, _ := e.store.CountSubscribers(t.Context(), "*"); c != 2 {
		t.Errorf("* has %d subscribers, want both kept", c)
	}
}
