package devstack_test

import (
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/metricstest"
	"github.com/wsgateway/wsgateway/internal/poll"
)

// TestMetrics scrapes /metrics around publishes to real WebSocket clients,
// as `curl 127.0.0.1:8081/metrics` would, and checks that every counter and
// histogram moved by exactly what happened, and that the connection gauge
// follows the clients.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
	a := e.dial(t, "metrics")
	c := e.dial(t, "metrics")
	e.dial(t, "metrics-gone")
	goneID := e.soleSubscriber(t, "metrics-gone")
	before := e.scrape(t)
	if got := before.Value(t, "wsgateway_connections_active"); got != 3 {
		t.Fatalf("connections_active = %v with 3 clients open", got)
	}

	// One publish over gRPC and one over REST, each to both subscribers.
	msgID := e.publish(t, "metrics", `"grpc"`, 2)
	for _, cl := range []*client{a, c} {
		cl.expectMessage(t, "metrics", msgID, `"grpc"`, nil)
	}
	got := e.restPublish(t, "metrics", `{"data":"rest"}`, http.StatusOK)
	for _, cl := range []*client{a, c} {
		cl.expectMessage(t, "metrics", got["messageId"].(string), `"rest"`, nil)
	}
	after := e.scrape(t)
	publishCall := []string{"grpc_service", "wsgateway.v1.PublisherService", "grpc_method", "Publish"}
	expectDeltas(t, before, after, []delta{
		{"wsgateway_publishes_total", []string{"outcome", "ok"}, 2},
		{"wsgateway_deliveries_total", []string{"outcome", "delivered"}, 4},
		{"wsgateway_deliveries_total", []string{"outcome", "gone"}, 0},
		{"wsgateway_deliveries_total", []string{"outcome", "failed"}, 0},
		{"wsgateway_delivery_retries_total", nil, 0},
		{"wsgateway_fanout_duration_seconds", nil, 2},
		{"wsgateway_subscriber_lookup_duration_seconds", nil, 2},
		{"wsgateway_management_call_duration_seconds", []string{"outcome", "ok"}, 4},
		{"wsgateway_grpc_server_handled_total", append(publishCall, "grpc_code", "OK"), 2},
		{"wsgateway_grpc_server_handling_seconds", publishCall, 2},
	})
	if got := after.Value(t, "wsgateway_connections_active"); got != 3 {
		t.Errorf("connections_active = %v with 3 clients open", got)
	}

	// A connection that vanished without $disconnect: one 410, forgotten.
	if !e.stack.Emulator.Drop(goneID) {
		t.Fatal("Drop: no such connection")
	}
	before = after
	e.publish(t, "metrics-gone", `1`, 0)
	// A refused publish is counted, but not timed as a fan-out.
	e.restPublish(t, "metrics", `{}`, http.StatusBadRequest)
	after = e.scrape(t)
	expectDeltas(t, before, after, []delta{
		{"wsgateway_publishes_total", []string{"outcome", "ok"}, 1},
		{"wsgateway_publishes_total", []string{"outcome", "invalid"}, 1},
		{"wsgateway_deliveries_total", []string{"outcome", "delivered"}, 0},
		{"wsgateway_deliveries_total", []string{"outcome", "gone"}, 1},
		{"wsgateway_fanout_duration_seconds", nil, 1},
		{"wsgateway_management_call_duration_seconds", []string{"outcome", "ok"}, 0},
		{"wsgateway_management_call_duration_seconds", []string{"outcome", "gone"}, 1},
		{"wsgateway_grpc_server_handled_total", append(publishCall, "grpc_code", "OK"), 1},
		{"wsgateway_grpc_server_handled_total", append(publishCall, "grpc_code", "InvalidArgument"), 1},
	})
	if got := after.Value(t, "wsgateway_connections_active"); got != 2 {
		t.Errorf("connections_active = %v after a drop, want 2", got)
	}

	a.conn.Close(websocket.StatusNormalClosure, "bye")
	poll.Until(t, eventually, "connections_active 1 after a client closed", func() bool {
		return e.scrape(t).Value(t, "wsgateway_connections_active") == 1
	})
	if ids := e.subscribers(t, "metrics"); len(ids) != 1 {
		t.Errorf("subscribers of metrics after a close = %v, want c alone", ids)
	}
}

func (e *e2e) scrape(t *testing.T) metricstest.Families {
	t.Helper()
	return metricstest.Scrape(t, e.http+"/metrics")
}

type delta struct {
	name   string
	labels []string
	want   float64
}

func expectDeltas(t *testing.T, before, after metricstest.Families, deltas []delta) {
	t.Helper()
	for _, d := range deltas {
		if got := after.Value(t, d.name, d.labels...) - before.Value(t, d.name, d.labels...); got != d.want {
			t.Errorf("%s%v moved by %v, want %v", d.name, d.labels, got, d.want)
		}
	}
}
