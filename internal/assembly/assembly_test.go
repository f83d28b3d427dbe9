package assembly_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/wsgateway/wsgateway/internal/assembly"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/handler"
)

// management records the posts of a management API.
type management struct {
	mu    sync.Mutex
	posts map[string][]byte // connection id → body
}

func (m *management) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.posts[strings.TrimPrefix(r.URL.Path, "/@connections/")] = body
}

// A connection recorded and subscribed through the route table receives
// what the publish Lambda's handler publishes, through the management
// endpoint the options name; the lines logged during the invocation carry
// its AWS request id.
func TestRoutesAndPublishShareOneStack(t *testing.T) {
	t.Parallel()
	mgmt := &management{posts: map[string][]byte{}}
	srv := httptest.NewServer(mgmt)
	t.Cleanup(srv.Close)
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	gw, err := assembly.New(t.Context(), cfg, assembly.Options{
		Log:                slog.New(slog.NewJSONHandler(&logs, nil)),
		MemoryStore:        true,
		LocalCredentials:   true,
		ManagementEndpoint: srv.URL,
	})
	if err != nil {
		t.Fatal(err)
	}

	table := gw.RouteTable()
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"$connect", "$default", "$disconnect", "publish", "subscribe", "unsubscribe"}; !slices.Equal(keys, want) {
		t.Fatalf("route keys = %q, want %q", keys, want)
	}
	if reply := assembly.MockRoutes()["ping"]; !strings.Contains(reply, "pong") {
		t.Errorf("ping's mock reply = %q, want a pong frame", reply)
	}
	event := func(route, body string) events.APIGatewayWebsocketProxyRequest {
		var req events.APIGatewayWebsocketProxyRequest
		req.RequestContext.RouteKey, req.RequestContext.ConnectionID, req.Body = route, "conn-1", body
		return req
	}
	ctx := context.Background()
	if resp, err := table["$connect"](ctx, event("$connect", "")); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("$connect = %d, %v", resp.StatusCode, err)
	}
	if resp, err := table["subscribe"](ctx, event("subscribe", `{"action":"subscribe","topic":"news"}`)); err != nil || !strings.Contains(resp.Body, "subscribed") {
		t.Fatalf("subscribe = %q, %v", resp.Body, err)
	}

	invocation := lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: "req-42"})
	out, err := gw.Publish.Handle(invocation, json.RawMessage(`{"topic":"news","data":{"hello":"world"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if res := out.(handler.PublishResponse); res.Delivered != 1 {
		t.Errorf("publish = %+v, want 1 delivered", res)
	}
	mgmt.mu.Lock()
	got := string(mgmt.posts["conn-1"])
	mgmt.mu.Unlock()
	if !strings.Contains(got, `"hello":"world"`) {
		t.Errorf("conn-1 was posted %q, want the message", got)
	}
	// A client's publish, through the route table, goes through the same
	// fan-out: the topic's stream continues at offset 2.
	resp, err := table["publish"](ctx, event("publish", `{"action":"publish","topic":"news","data":"from a client","ref":"c"}`))
	if err != nil || !strings.Contains(resp.Body, `"type":"published"`) || !strings.Contains(resp.Body, `"offset":2`) {
		t.Errorf("publish route = %q, %v; want published at offset 2", resp.Body, err)
	}
	mgmt.mu.Lock()
	got = string(mgmt.posts["conn-1"])
	mgmt.mu.Unlock()
	if !strings.Contains(got, `"from a client"`) {
		t.Errorf("conn-1 was posted %q, want the client's message", got)
	}
	if !strings.Contains(logs.String(), `"aws_request_id":"req-42"`) {
		t.Errorf("no line of the invocation carries its AWS request id:\n%s", logs.String())
	}
}
