package publisher_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/metrics"
	"github.com/wsgateway/wsgateway/internal/metricstest"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
)

// server is a running publisher.Run over the in-memory store, with one
// subscriber of topic "t" whose posts are refused, so that every publish
// also makes the fan-out log a line.
type server struct {
	grpc  *grpc.ClientConn
	http  string
	logs  *logBuffer
	ready atomic.Pointer[error] // what Ready answers; nil: ready
}

func startServer(t *testing.T, ready func(context.Context) error) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st := store.NewMemory()
	if err := st.PutConnection(ctx, store.Connection{ID: "refuses", ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.Subscribe(ctx, "refuses", "", []string{"t"}); err != nil {
		t.Fatal(err)
	}
	s := &server{logs: &logBuffer{}}
	// The fan-out's logger needs the RequestIDHandler to see request ids;
	// Run is given the plain one, as it adds request ids itself.
	log := slog.New(slog.NewJSONHandler(s.logs, nil))
	m := metrics.New(prometheus.NewRegistry())
	fan := fanout.New(st, refusingPoster{}, fanout.Options{
		Logger:   slog.New(publisher.NewRequestIDHandler(log.Handler())),
		Observer: m,
	})
	if ready == nil {
		ready = func(context.Context) error {
			if err := s.ready.Load(); err != nil {
				return *err
			}
			return nil
		}
	}

	grpcLis, httpLis := listen(t), listen(t)
	done := make(chan error, 1)
	go func() {
		done <- publisher.Run(ctx, publisher.Config{
			GRPC: grpcLis, HTTP: httpLis,
			Service: publisher.NewService(fan, st),
			Ready:   ready,
			Metrics: m,
			Log:     log,
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.grpc, s.http = conn, "http://"+httpLis.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health never SERVING: %v %v", res, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type refusingPoster struct{}

func (refusingPoster) PostToConnection(context.Context, string, []byte) error {
	return apigw.ErrForbidden
}

// A request id follows a call from the caller's X-Request-Id header (or
// x-request-id metadata) through the interceptor and the fan-out's log
// lines back to the caller; without a usable one, the server makes one up.
func TestRequestID(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	tests := []struct {
		name     string
		given    string // "": none sent
		over     string // "rest" or "grpc"
		body     string // REST body; the gRPC calls publish a valid message
		wantKept bool
		wantCode int // HTTP status
	}{
		{name: "REST, caller's id", over: "rest", given: "trace-4bf92f3577b34da6", body: `{"data":1}`, wantKept: true, wantCode: 200},
		{name: "REST, none", over: "rest", body: `{"data":1}`, wantCode: 200},
		{name: "REST, refused call keeps it", over: "rest", given: "req-400", body: `{}`, wantKept: true, wantCode: 400},
		{name: "REST, too long", over: "rest", given: strings.Repeat("a", 129), body: `{"data":1}`, wantCode: 200},
		{name: "REST, space", over: "rest", given: "a b", body: `{"data":1}`, wantCode: 200},
		{name: "REST, non-ASCII", over: "rest", given: "ïd", body: `{"data":1}`, wantCode: 200},
		{name: "gRPC, caller's id", over: "grpc", given: "grpc-7", wantKept: true},
		{name: "gRPC, none", over: "grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got string
			if tt.over == "rest" {
				got = s.restPublish(t, tt.given, tt.body, tt.wantCode)
			} else {
				got = s.grpcPublish(t, tt.given)
			}
			switch {
			case tt.wantKept && got != tt.given:
				t.Fatalf("request id = %q, want the caller's %q", got, tt.given)
			case !tt.wantKept && (got == "" || got == tt.given || len(got) > 128):
				t.Fatalf("request id = %q, want a fresh one", got)
			}

			rpc := s.logs.one(t, got, "rpc")
			if rpc["method"] != "/wsgateway.v1.PublisherService/Publish" {
				t.Errorf("rpc line %v: wrong method", rpc)
			}
			if tt.wantCode == http.StatusBadRequest {
				return // refused before the fan-out
			}
			if line := s.logs.one(t, got, "fanout: post failed"); line["topic"] != "t" {
				t.Errorf("fan-out line %v: want topic t", line)
			}
		})
	}
}

// restPublish POSTs body to topic t and returns the X-Request-Id answered.
func (s *server) restPublish(t *testing.T, requestID, body string, wantCode int) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.http+"/v1/topics/t:publish", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("POST = %d %s, want %d", resp.StatusCode, raw, wantCode)
	}
	if ids := resp.Header.Values("X-Request-Id"); len(ids) != 1 {
		t.Fatalf("X-Request-Id headers = %q, want exactly one", ids)
	}
	return resp.Header.Get("X-Request-Id")
}

// grpcPublish publishes to t and returns the x-request-id header answered.
func (s *server) grpcPublish(t *testing.T, requestID string) string {
	t.Helper()
	ctx := context.Background()
	if requestID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, publisher.RequestIDKey, requestID)
	}
	var header metadata.MD
	_, err := wsgatewayv1.NewPublisherServiceClient(s.grpc).Publish(ctx,
		&wsgatewayv1.PublishRequest{Topic: "t", Data: structpb.NewNumberValue(1)}, grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	ids := header.Get(publisher.RequestIDKey)
	if len(ids) != 1 {
		t.Fatalf("x-request-id headers = %q, want exactly one", ids)
	}
	return ids[0]
}

func TestHealth(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.expectStatus(t, "/healthz", http.StatusOK)
	s.expectStatus(t, "/readyz", http.StatusOK)

	down := errors.New("store down")
	s.ready.Store(&down)
	s.expectStatus(t, "/readyz", http.StatusServiceUnavailable)
	s.expectStatus(t, "/healthz", http.StatusOK) // alive: restarting would not bring the store back
	if line := s.logs.find("not ready: store unreachable"); line == nil || line["err"] != "store down" {
		t.Errorf("no log line says why /readyz failed: %s", s.logs)
	}

	s.ready.Store(nil)
	s.expectStatus(t, "/readyz", http.StatusOK)
}

// /readyz follows a real DynamoDB going away and coming back.
func TestReadyzFollowsTheStore(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	ctx := context.Background()
	client := store.NewDynamoDBClient(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	}, db.Endpoint())
	if err := store.EnsureTable(ctx, client, "ready"); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, store.NewDynamoDB(client, "ready").Ping)

	s.expectStatus(t, "/readyz", http.StatusOK)
	db.Stop()
	s.expectStatus(t, "/readyz", http.StatusServiceUnavailable)
	db.Restart()
	s.expectStatus(t, "/readyz", http.StatusOK)
}

// /metrics is served on the HTTP listener, and a REST call is measured as
// the gRPC call it is forwarded as.
func TestMetricsServed(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	s.restPublish(t, "", `{"data":1}`, http.StatusOK)

	m := metricstest.Scrape(t, s.http+"/metrics")
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"wsgateway_grpc_server_handled_total", []string{"grpc_service", "wsgateway.v1.PublisherService", "grpc_method", "Publish", "grpc_code", "OK"}},
		{"wsgateway_publishes_total", []string{"outcome", "ok"}},
		{"wsgateway_deliveries_total", []string{"outcome", "failed"}},
	} {
		if got := m.Value(t, c.name, c.labels...); got != 1 {
			t.Errorf("%s%v = %v, want 1", c.name, c.labels, got)
		}
	}
}

func (s *server) expectStatus(t *testing.T, path string, want int) {
	t.Helper()
	resp, err := http.Get(s.http + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s = %d, want %d", path, resp.StatusCode, want)
	}
}

// logBuffer collects JSON log lines from concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns every line logged so far whose fields match want.
func (b *logBuffer) lines(want map[string]string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
next:
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		for k, v := range want {
			if line[k] != v {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

func (b *logBuffer) find(msg string) map[string]any {
	if l := b.lines(map[string]string{"msg": msg}); len(l) > 0 {
		return l[0]
	}
	return nil
}

// one returns the one line msg logged with requestID. The interceptor logs
// before it answers, so the line is there by the time the caller has the
// response.
func (b *logBuffer) one(t *testing.T, requestID, msg string) map[string]any {
	t.Helper()
	l := b.lines(map[string]string{"msg": msg, "request_id": requestID})
	if len(l) != 1 {
		t.Fatalf("%d %q lines with request_id %q, want 1; log:\n%s", len(l), msg, requestID, b)
	}
	return l[0]
}
