package devstack_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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
	if got := before.value(t, "wsgateway_connections_active"); got != 3 {
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
	after.expectDeltas(t, before, []delta{
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
	if got := after.value(t, "wsgateway_connections_active"); got != 3 {
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
	after.expectDeltas(t, before, []delta{
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
	if got := after.value(t, "wsgateway_connections_active"); got != 2 {
		t.Errorf("connections_active = %v after a drop, want 2", got)
	}

	a.conn.Close(websocket.StatusNormalClosure, "bye")
	eventually(t, "connections_active 1 after a client closed", func() bool {
		return e.scrape(t).value(t, "wsgateway_connections_active") == 1
	})
	if ids := e.subscribers(t, "metrics"); len(ids) != 1 {
		t.Errorf("subscribers of metrics after a close = %v, want c alone", ids)
	}
}

// scraped is one scrape of /metrics, parsed.
type scraped map[string]*dto.MetricFamily

func (e *e2e) scrape(t *testing.T) scraped {
	t.Helper()
	resp, err := http.Get(e.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// value is the counter's or gauge's value, or the histogram's sample
// count, of the one series of name whose labels include the given pairs.
func (s scraped) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	var found []*dto.Metric
next:
	for _, m := range s[name].GetMetric() {
		for i := 0; i < len(labels); i += 2 {
			if !hasLabel(m, labels[i], labels[i+1]) {
				continue next
			}
		}
		found = append(found, m)
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, labels, len(found))
	}
	switch m := found[0]; {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatalf("%s: not a counter, gauge or histogram", name)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

type delta struct {
	name   string
	labels []string
	want   float64
}

func (s scraped) expectDeltas(t *testing.T, before scraped, deltas []delta) {
	t.Helper()
	for _, d := range deltas {
		if got := s.value(t, d.name, d.labels...) - before.value(t, d.name, d.labels...); got != d.want {
			t.Errorf("%s%v moved by %v, want %v", d.name, d.labels, got, d.want)
		}
	}
}
