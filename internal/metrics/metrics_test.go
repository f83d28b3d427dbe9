package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/metrics"
	"github.com/wsgateway/wsgateway/internal/metricstest"
	"github.com/wsgateway/wsgateway/internal/store"
)

func TestPublishDone(t *testing.T) {
	t.Parallel()
	res := fanout.Result{MessageID: "m", Delivered: 3, Gone: 2, Failed: 1}
	tests := []struct {
		name          string
		res           fanout.Result
		err           error
		wantOutcome   string
		wantDurations float64 // samples in the fan-out histogram
	}{
		{"ok", res, nil, "ok", 1},
		{"invalid", fanout.Result{}, fmt.Errorf("%w: no data", fanout.ErrInvalid), "invalid", 0},
		{"store down", fanout.Result{}, fmt.Errorf("read: %w: %w", store.ErrUnavailable, errors.New("dial")), "unavailable", 1},
		// What fanout returns when the deadline cut a failing read: the
		// caller's deadline, not an outage.
		{"deadline", fanout.Result{}, fmt.Errorf("%w: %w", context.DeadlineExceeded, store.ErrUnavailable), "deadline_exceeded", 1},
		{"canceled", fanout.Result{}, fmt.Errorf("read: %w", context.Canceled), "canceled", 1},
		{"unknown", fanout.Result{}, errors.New("surprise"), "error", 1},
		{"partial page failure", res, fmt.Errorf("page 2: %w", store.ErrUnavailable), "unavailable", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, srv := newMetrics(t)
			m.PublishDone(tt.res, tt.err, 20*time.Millisecond)

			s := metricstest.Scrape(t, srv.URL)
			for _, o := range []string{"ok", "invalid", "unavailable", "deadline_exceeded", "canceled", "error"} {
				want := 0.0
				if o == tt.wantOutcome {
					want = 1
				}
				if got := s.Value(t, "wsgateway_publishes_total", "outcome", o); got != want {
					t.Errorf("publishes_total{outcome=%q} = %v, want %v", o, got, want)
				}
			}
			for o, want := range map[string]int{"delivered": tt.res.Delivered, "gone": tt.res.Gone, "failed": tt.res.Failed} {
				if got := s.Value(t, "wsgateway_deliveries_total", "outcome", o); got != float64(want) {
					t.Errorf("deliveries_total{outcome=%q} = %v, want %d", o, got, want)
				}
			}
			if got := s.Value(t, "wsgateway_fanout_duration_seconds"); got != tt.wantDurations {
				t.Errorf("fanout_duration_seconds count = %v, want %v", got, tt.wantDurations)
			}
			if tt.wantDurations == 1 {
				if got := s.Histogram(t, "wsgateway_fanout_duration_seconds").GetSampleSum(); got != 0.02 {
					t.Errorf("fanout_duration_seconds sum = %v, want 0.02", got)
				}
			}
		})
	}
}

func TestPosterOutcomes(t *testing.T) {
	t.Parallel()
	sdkErr := errors.New("operation error ApiGatewayManagementApi: PostToConnection")
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("%w: %w", apigw.ErrGone, sdkErr), "gone"},
		{fmt.Errorf("%w: %w", apigw.ErrThrottled, sdkErr), "throttled"},
		{fmt.Errorf("%w: %w", apigw.ErrTooLarge, sdkErr), "too_large"},
		{fmt.Errorf("%w: %w", apigw.ErrForbidden, sdkErr), "forbidden"},
		{fmt.Errorf("%w: %w", apigw.ErrServer, sdkErr), "server_error"},
		{fmt.Errorf("%w: %w", apigw.ErrUnreachable, sdkErr), "unreachable"},
		{fmt.Errorf("post: %w", context.DeadlineExceeded), "timeout"},
		{context.Canceled, "canceled"},
		{sdkErr, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			m, srv := newMetrics(t)
			p := m.WrapPoster(posterFunc(func(context.Context, string, []byte) error { return tt.err }))
			if err := p.PostToConnection(context.Background(), "c", []byte("x")); err != tt.err {
				t.Fatalf("PostToConnection = %v, want the wrapped poster's %v unchanged", err, tt.err)
			}
			s := metricstest.Scrape(t, srv.URL)
			for _, o := range tests {
				want := 0.0
				if o.want == tt.want {
					want = 1
				}
				if got := s.Value(t, "wsgateway_management_call_duration_seconds", "outcome", o.want); got != want {
					t.Errorf("management_call_duration_seconds{outcome=%q} count = %v, want %v", o.want, got, want)
				}
			}
		})
	}
}

// The fan-out, observed, against the in-memory store: every hook lands in
// its metric with the exact counts of what happened.
func TestFanoutObserved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := store.NewMemory()
	for _, id := range []string{"ok", "throttled-once", "gone", "forbidden"} {
		if err := st.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := st.Subscribe(ctx, id, "", []string{"t"}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	posts := map[string]int{}
	api := posterFunc(func(_ context.Context, id string, _ []byte) error {
		mu.Lock()
		defer mu.Unlock()
		posts[id]++
		switch {
		case id == "throttled-once" && posts[id] == 1:
			return apigw.ErrThrottled
		case id == "gone":
			return apigw.ErrGone
		case id == "forbidden":
			return apigw.ErrForbidden
		}
		return nil
	})

	m, srv := newMetrics(t)
	f := fanout.New(st, m.WrapPoster(api), fanout.Options{
		PageSize:    3, // two reads for four subscribers
		BaseBackoff: time.Millisecond,
		MaxBackoff:  time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
		Observer:    m,
	})
	res, err := f.Publish(ctx, fanout.Message{Topic: "t", Data: json.RawMessage(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != 2 || res.Gone != 1 || res.Failed != 1 {
		t.Fatalf("Publish = %+v, want 2 delivered, 1 gone, 1 failed", res)
	}
	if _, err := f.Publish(ctx, fanout.Message{Topic: "t"}); !errors.Is(err, fanout.ErrInvalid) {
		t.Fatalf("Publish without data = %v, want ErrInvalid", err)
	}

	s := metricstest.Scrape(t, srv.URL)
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"wsgateway_publishes_total", []string{"outcome", "ok"}, 1},
		{"wsgateway_publishes_total", []string{"outcome", "invalid"}, 1},
		{"wsgateway_deliveries_total", []string{"outcome", "delivered"}, 2},
		{"wsgateway_deliveries_total", []string{"outcome", "gone"}, 1},
		{"wsgateway_deliveries_total", []string{"outcome", "failed"}, 1},
		{"wsgateway_delivery_retries_total", nil, 1},
		{"wsgateway_fanout_duration_seconds", nil, 1},
		{"wsgateway_subscriber_lookup_duration_seconds", nil, 2},
		{"wsgateway_management_call_duration_seconds", []string{"outcome", "ok"}, 2},
		{"wsgateway_management_call_duration_seconds", []string{"outcome", "throttled"}, 1},
		{"wsgateway_management_call_duration_seconds", []string{"outcome", "gone"}, 1},
		{"wsgateway_management_call_duration_seconds", []string{"outcome", "forbidden"}, 1},
	} {
		if got := s.Value(t, w.name, w.labels...); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
}

func TestTrackConnections(t *testing.T) {
	t.Parallel()
	m, srv := newMetrics(t)
	n := 3
	m.TrackConnections(func() int { return n })
	if got := metricstest.Scrape(t, srv.URL).Value(t, "wsgateway_connections_active"); got != 3 {
		t.Errorf("connections_active = %v, want 3", got)
	}
	n = 1 // read at scrape time, not registration time
	if got := metricstest.Scrape(t, srv.URL).Value(t, "wsgateway_connections_active"); got != 1 {
		t.Errorf("connections_active after a change = %v, want 1", got)
	}
}

// gRPC calls are counted by method and code and timed, through a real
// server; every registered method shows at zero before its first call.
func TestGRPC(t *testing.T) {
	t.Parallel()
	m, srv := newMetrics(t)
	s := grpc.NewServer(grpc.UnaryInterceptor(m.UnaryServerInterceptor()))
	healthpb.RegisterHealthServer(s, health.NewServer())
	m.InitializeGRPC(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)

	check := []string{"grpc_type", "unary", "grpc_service", "grpc.health.v1.Health", "grpc_method", "Check"}
	if got := metricstest.Scrape(t, srv.URL).Value(t, "wsgateway_grpc_server_handled_total", append(check, "grpc_code", "OK")...); got != 0 {
		t.Fatalf("handled_total before any call = %v, want a series at 0", got)
	}

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"}); err == nil {
		t.Fatal("Check of an unknown service succeeded")
	}

	sc := metricstest.Scrape(t, srv.URL)
	for code, want := range map[string]float64{"OK": 1, "NotFound": 1, "Internal": 0} {
		if got := sc.Value(t, "wsgateway_grpc_server_handled_total", append(check, "grpc_code", code)...); got != want {
			t.Errorf("handled_total{Check, %s} = %v, want %v", code, got, want)
		}
	}
	if got := sc.Value(t, "wsgateway_grpc_server_handling_seconds", check...); got != 2 {
		t.Errorf("handling_seconds{Check} count = %v, want 2", got)
	}
}

// The Go runtime and the process are exported next to ours.
func TestRuntimeCollectors(t *testing.T) {
	t.Parallel()
	_, srv := newMetrics(t)
	s := metricstest.Scrape(t, srv.URL)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := s[name]; !ok {
			t.Errorf("%s is not exported", name)
		}
	}
	if got := s.Value(t, "go_goroutines"); got < 1 {
		t.Errorf("go_goroutines = %v", got)
	}
}

func TestNewPanicsOnARegistryInUse(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	defer func() {
		if recover() == nil {
			t.Error("a second New on the same registry did not panic")
		}
	}()
	metrics.New(reg)
}

type posterFunc func(ctx context.Context, connectionID string, data []byte) error

func (f posterFunc) PostToConnection(ctx context.Context, connectionID string, data []byte) error {
	return f(ctx, connectionID, data)
}

// newMetrics returns Metrics on a registry of their own and a server of
// their /metrics handler.
func newMetrics(t *testing.T) (*metrics.Metrics, *httptest.Server) {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return m, srv
}
