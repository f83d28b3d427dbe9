package publisher_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
)

const testKey = "test-key-1"

// edge is a running publisher.Run with API_KEYS set to testKey.
type edge struct {
	grpc  *grpc.ClientConn
	http  string
	store *store.Memory
}

type edgeOptions struct {
	exec        publisher.Executor // nil: a fan-out to no subscriber, keeping positions and history in the store
	mgmt        *recordingAPI      // with exec nil: the fan-out posts to and closes connections through it
	callTimeout time.Duration
}

func startEdge(t *testing.T, o edgeOptions) *edge {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st := store.NewMemory()
	log := slog.New(slog.DiscardHandler)
	exec := o.exec
	switch {
	case exec == nil && o.mgmt != nil:
		exec = fanout.New(st, o.mgmt, fanout.Options{Logger: log, Streams: st, HistoryTTL: time.Minute, Closer: o.mgmt})
	case exec == nil:
		exec = fanout.New(st, refusingPoster{}, fanout.Options{Logger: log, Streams: st, HistoryTTL: time.Minute})
	}
	grpcLis, httpLis := listen(t), listen(t)
	done := make(chan error, 1)
	go func() {
		done <- publisher.Run(ctx, publisher.Config{
			GRPC: grpcLis, HTTP: httpLis,
			Service:     publisher.NewService(exec, st),
			APIKeys:     []string{testKey, "test-key-2"},
			Log:         log,
			CallTimeout: o.callTimeout,
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health never SERVING: %v %v", res, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &edge{grpc: conn, http: "http://" + httpLis.Addr().String(), store: st}
}

// restReply is an answer of the REST facade; Code and Message are the
// gateway's error body ({"code": <gRPC code>, "message": …}).
type restReply struct {
	Status  int
	Header  http.Header
	Code    codes.Code
	Message string
}

// do sends method path with body (nil: none; an io.Reader without a known
// length goes chunked) and the given Authorization headers.
func (e *edge) do(t *testing.T, method, path string, body io.Reader, authorization ...string) restReply {
	t.Helper()
	req, err := http.NewRequest(method, e.http+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range authorization {
		req.Header.Add("Authorization", a)
	}
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := restReply{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK && method != http.MethodHead {
		var b struct {
			Code    codes.Code `json:"code"`
			Message string     `json:"message"`
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("%s %s = %d with a body that is not the gateway's error JSON: %q", method, path, resp.StatusCode, raw)
		}
		r.Code, r.Message = b.Code, b.Message
	}
	return r
}

func bearer(key string) string { return "Bearer " + key }

// chunked hides the length of r, so the request goes out chunked.
type chunked struct{ io.Reader }

// With API_KEYS set, the REST facade checks the key before reading the
// body: whatever an unauthenticated caller sends, it gets 401 with an RFC
// 6750 challenge. Exactly one valid Authorization authenticates.
func TestRESTAuth(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	big := strings.Repeat("x", 4<<20)
	for _, tc := range []struct {
		name string
		body func() io.Reader
		auth []string
		want int
	}{
		{"valid key", func() io.Reader { return strings.NewReader(`{"data":1}`) }, []string{bearer(testKey)}, 200},
		{"the other valid key", func() io.Reader { return strings.NewReader(`{"data":1}`) }, []string{bearer("test-key-2")}, 200},
		{"no key, malformed body", func() io.Reader { return strings.NewReader(`{`) }, nil, 401},
		{"no key, 4 MB body", func() io.Reader { return strings.NewReader(`{"data":"` + big + `"}`) }, nil, 401},
		{"no key, 4 MB chunked body", func() io.Reader { return chunked{strings.NewReader(`{"data":"` + big + `"}`)} }, nil, 401},
		{"wrong key", func() io.Reader { return strings.NewReader(`{"data":1}`) }, []string{bearer("nope")}, 401},
		{"valid then invalid", func() io.Reader { return strings.NewReader(`{"data":1}`) }, []string{bearer(testKey), bearer("nope")}, 401},
		{"invalid then valid", func() io.Reader { return strings.NewReader(`{"data":1}`) }, []string{bearer("nope"), bearer(testKey)}, 401},
		{"valid twice", func() io.Reader { return strings.NewReader(`{"data":1}`) }, []string{bearer(testKey), bearer(testKey)}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, "/v1/topics/demo:publish", tc.body(), tc.auth...)
			if r.Status != tc.want {
				t.Fatalf("status = %d %q, want %d", r.Status, r.Message, tc.want)
			}
			if tc.want != 401 {
				return
			}
			if got := r.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != `Bearer realm="wsgateway"` {
				t.Errorf("WWW-Authenticate = %q, want one RFC 6750 challenge", got)
			}
			if r.Code != codes.Unauthenticated || !strings.Contains(r.Message, "Bearer") {
				t.Errorf("body = %v %q, want Unauthenticated explaining what to send", r.Code, r.Message)
			}
		})
	}
}

func TestGRPCAuth(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	req := &wsgatewayv1.PublishRequest{Topic: "demo", Data: structpb.NewNumberValue(1)}
	for _, tc := range []struct {
		name string
		auth []string
		want codes.Code
	}{
		{"valid key", []string{bearer(testKey)}, codes.OK},
		{"none", nil, codes.Unauthenticated},
		{"wrong key", []string{bearer("nope")}, codes.Unauthenticated},
		{"valid then invalid", []string{bearer(testKey), bearer("nope")}, codes.Unauthenticated},
		{"invalid then valid", []string{bearer("nope"), bearer(testKey)}, codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			for _, a := range tc.auth {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
			}
			_, err := client.Publish(ctx, req)
			if status.Code(err) != tc.want {
				t.Fatalf("Publish = %v, want %v", err, tc.want)
			}
		})
	}
}

// The documented `grpcurl -plaintext …:9090 grpc.health.v1.Health/Check`
// works without a key: grpcurl resolves the method by reflection first,
// so reflection is open as well as health.
func TestHealthCheckByReflectionWithoutKey(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	stream, err := reflectionpb.NewServerReflectionClient(e.grpc).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "grpc.health.v1.Health"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection without a key: %v", err)
	}
	stream.CloseSend()
	found := false
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(raw, &fd); err != nil {
			t.Fatal(err)
		}
		for _, svc := range fd.GetService() {
			for _, m := range svc.GetMethod() {
				if fd.GetPackage()+"."+svc.GetName() == "grpc.health.v1.Health" && m.GetName() == "Check" {
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatalf("reflection did not resolve grpc.health.v1.Health/Check: %v", resp)
	}
	res, err := healthpb.NewHealthClient(e.grpc).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check without a key = %v, %v", res, err)
	}
}

// Oversized requests are the caller's mistake: 413 (REST) or
// InvalidArgument (gRPC) naming the limit, never 429/ResourceExhausted.
func TestRequestSizeLimits(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	over := `{"data":"` + strings.Repeat("x", publisher.MaxRESTBodyBytes) + `"}`
	for name, body := range map[string]func() io.Reader{
		"with Content-Length": func() io.Reader { return strings.NewReader(over) },
		"chunked":             func() io.Reader { return chunked{strings.NewReader(over)} },
	} {
		r := e.do(t, http.MethodPost, "/v1/topics/demo:publish", body(), bearer(testKey))
		if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Message, strconv.Itoa(publisher.MaxRESTBodyBytes)) {
			t.Errorf("%s: oversized body = %d %q, want 413 naming the limit", name, r.Status, r.Message)
		}
	}

	// A deliverable message must fit both limits on the way from REST to
	// gRPC, where 0 takes 11 bytes instead of 2.
	zeros := strings.TrimSuffix(strings.Repeat("0,", 50_000), ",")
	if r := e.do(t, http.MethodPost, "/v1/topics/demo:publish", strings.NewReader(`{"data":[`+zeros+`]}`), bearer(testKey)); r.Status != http.StatusOK {
		t.Errorf("100 KB of zeros = %d %q, want 200", r.Status, r.Message)
	}

	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", bearer(testKey))
	_, err := wsgatewayv1.NewPublisherServiceClient(e.grpc).Publish(ctx, &wsgatewayv1.PublishRequest{
		Topic: "demo", Data: structpb.NewStringValue(strings.Repeat("x", publisher.MaxGRPCRequestBytes+1)),
	})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), strconv.Itoa(publisher.MaxGRPCRequestBytes)) {
		t.Errorf("oversized gRPC request = %v, want InvalidArgument naming the limit", err)
	}
}

// Every REST route answers a method it does not serve with 405 and Allow.
func TestWrongMethod(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	for _, tc := range []struct {
		path  string
		allow string
	}{
		{"/v1/topics/demo:publish", http.MethodPost},
		{"/v1/topics/demo/subscribers", http.MethodGet},
		{"/v1/topics/demo/history", http.MethodGet},
	} {
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if m == tc.allow {
				continue
			}
			r := e.do(t, m, tc.path, nil, bearer(testKey))
			if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != tc.allow {
				t.Errorf("%s %s = %d, Allow %q; want 405, Allow %q", m, tc.path, r.Status, r.Header.Get("Allow"), tc.allow)
			}
		}
	}
	// The routes themselves still work.
	if r := e.do(t, http.MethodGet, "/v1/topics/demo/subscribers", nil, bearer(testKey)); r.Status != http.StatusOK {
		t.Errorf("GET subscribers = %d %q", r.Status, r.Message)
	}
}

// REST refusals speak the API's terms: REST field names, no Go or protojson
// internals.
func TestRESTErrorsInAPITerms(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	for _, tc := range []struct {
		name, method, path, body string
		want                     string // the key fact
		notWant                  []string
	}{
		{"unknown field", http.MethodPost, "/v1/topics/demo:publish", `{"data":1,"bogus":2}`, `unknown field "bogus"`, []string{"proto:", "line"}},
		{"not JSON", http.MethodPost, "/v1/topics/demo:publish", `{"data":`, "JSON", []string{"proto:"}},
		{"not an object", http.MethodPost, "/v1/topics/demo:publish", `[1]`, "object", []string{"proto:"}},
		{"wrong type", http.MethodPost, "/v1/topics/demo:publish", `{"attributes":{"a":1}}`, "value", []string{"proto:"}},
		{"pageSize not a number", http.MethodGet, "/v1/topics/demo/subscribers?pageSize=ten", "", "pageSize", []string{"strconv", "page_size", "parsing"}},
		{"pageSize too big", http.MethodGet, "/v1/topics/demo/subscribers?pageSize=99999999999", "", "pageSize", []string{"strconv", "page_size"}},
		{"page_size spelt the proto way", http.MethodGet, "/v1/topics/demo/subscribers?page_size=x", "", "pageSize", []string{"strconv"}},
		{"sinceOffset not a number", http.MethodGet, "/v1/topics/demo/history?sinceOffset=ten", "", "sinceOffset must be a whole number, 0 or more", []string{"strconv", "since_offset", "parsing"}},
		{"sinceOffset negative", http.MethodGet, "/v1/topics/demo/history?sinceOffset=-1", "", "sinceOffset must be a whole number, 0 or more", []string{"strconv", "since_offset"}},
		{"sinceOffset beyond 64 bits", http.MethodGet, "/v1/topics/demo/history?sinceOffset=18446744073709551616", "", "sinceOffset", []string{"strconv", "since_offset"}},
		{"limit not a number", http.MethodGet, "/v1/topics/demo/history?limit=all", "", "limit must be a whole number", []string{"strconv", "parsing"}},
		{"limit negative", http.MethodGet, "/v1/topics/demo/history?limit=-1", "", "limit must not be negative", []string{"strconv"}},
		{"idempotencyKey not a string", http.MethodPost, "/v1/topics/demo:publish", `{"data":1,"idempotencyKey":7}`, "idempotencyKey", []string{"proto:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := e.do(t, tc.method, tc.path, body, bearer(testKey))
			if r.Status != http.StatusBadRequest || r.Code != codes.InvalidArgument || !strings.Contains(r.Message, tc.want) {
				t.Fatalf("= %d %v %q, want 400 InvalidArgument saying %q", r.Status, r.Code, r.Message, tc.want)
			}
			for _, bad := range tc.notWant {
				if strings.Contains(r.Message, bad) {
					t.Errorf("message %q leaks %q", r.Message, bad)
				}
			}
		})
	}
}

// A number that would arrive changed is refused, naming where it is; the
// same value spelt differently is not a change.
func TestNumbersCarriedExactly(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	for _, tc := range []struct {
		body string
		path string // "": accepted
	}{
		{`{"data":{"id":9007199254740993}}`, "data.id"},
		{`{"data":{"items":[1,2,3,1e400]}}`, "data.items[3]"},
		{`{"data":[0, {"a": {"b c": 123456789012345678901234567890}}]}`, `data[1].a["b c"]`},
		{`{"data":-9007199254740993}`, "data"},
		{`{"data":1e-400}`, "data"},
		{`{"data":0.30000000000000000001}`, "data"},
		{`{"data":{"id":9007199254740992}}`, ""},
		{`{"data":{"id":-9007199254740992}}`, ""},
		{`{"data":[0.1, 1e2, 100.0, -0, 1.7976931348623157e308, 5e-324]}`, ""},
	} {
		r := e.do(t, http.MethodPost, "/v1/topics/demo:publish", strings.NewReader(tc.body), bearer(testKey))
		switch {
		case tc.path == "" && r.Status != http.StatusOK:
			t.Errorf("%s = %d %q, want 200", tc.body, r.Status, r.Message)
		case tc.path != "" && (r.Status != http.StatusBadRequest || !strings.Contains(r.Message, tc.path+":")):
			t.Errorf("%s = %d %q, want 400 naming %s", tc.body, r.Status, r.Message, tc.path)
		}
	}

	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", bearer(testKey))
	for path, data := range map[string]*structpb.Value{
		"data.x": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"ok": structpb.NewNumberValue(1), "x": structpb.NewNumberValue(math.NaN()),
		}}),
		"data[1]": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
			structpb.NewNumberValue(1), structpb.NewNumberValue(math.Inf(-1)),
		}}),
		"data": structpb.NewNumberValue(math.Inf(1)),
	} {
		_, err := client.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "demo", Data: data})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), path+":") {
			t.Errorf("gRPC %s = %v, want InvalidArgument naming %s", path, err, path)
		}
	}
}

// stallingExecutor is a fan-out whose store never answers: it returns only
// when the call's context is done. (Its other calls are the real fan-out's,
// which no test of it makes.)
type stallingExecutor struct{ *fanout.Fanout }

func (stallingExecutor) Publish(ctx context.Context, _ fanout.Message) (fanout.Result, error) {
	<-ctx.Done()
	return fanout.Result{}, ctx.Err()
}

// CallTimeout is the deadline of a call whose caller set none or a later
// one; the caller's shorter deadline stands.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	const callTimeout = 300 * time.Millisecond
	e := startEdge(t, edgeOptions{exec: stallingExecutor{}, callTimeout: callTimeout})
	client := wsgatewayv1.NewPublisherServiceClient(e.grpc)
	req := &wsgatewayv1.PublishRequest{Topic: "demo", Data: structpb.NewNumberValue(1)}
	auth := metadata.AppendToOutgoingContext(t.Context(), "authorization", bearer(testKey))

	within := func(t *testing.T, limit time.Duration, f func()) {
		t.Helper()
		start := time.Now()
		f()
		if d := time.Since(start); d > limit {
			t.Errorf("took %v, want under %v", d, limit)
		}
	}
	t.Run("REST without a client timeout", func(t *testing.T) {
		t.Parallel()
		within(t, 5*time.Second, func() {
			r := e.do(t, http.MethodPost, "/v1/topics/demo:publish", strings.NewReader(`{"data":1}`), bearer(testKey))
			if r.Status != http.StatusGatewayTimeout || r.Code != codes.DeadlineExceeded {
				t.Errorf("= %d %v %q, want 504 DeadlineExceeded", r.Status, r.Code, r.Message)
			}
		})
	})
	t.Run("gRPC without a deadline", func(t *testing.T) {
		t.Parallel()
		// A guard for the old behaviour (waiting forever), not the
		// caller's deadline under test.
		ctx, cancel := context.WithTimeout(auth, 10*time.Second)
		defer cancel()
		within(t, 5*time.Second, func() {
			if _, err := client.Publish(ctx, req); status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("= %v, want DeadlineExceeded", err)
			}
		})
	})
	t.Run("gRPC caller's shorter deadline", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(auth, 20*time.Millisecond)
		defer cancel()
		within(t, callTimeout-50*time.Millisecond, func() {
			if _, err := client.Publish(ctx, req); status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("= %v, want DeadlineExceeded", err)
			}
		})
	})
}

// /openapi.json names the API, its version and the bearer scheme every
// operation needs.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	resp, err := http.Get(e.http + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Info struct {
			Title, Version string
		}
		SecurityDefinitions map[string]struct {
			Type, In, Name, Description string
		}
		Security []map[string][]string
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Info.Title != "wsgateway PublisherService" || doc.Info.Version != "v1" {
		t.Errorf("info = %+v, want the service's name and v1", doc.Info)
	}
	if len(doc.Security) != 1 || len(doc.Security[0]) != 1 {
		t.Fatalf("security = %v, want one global requirement", doc.Security)
	}
	for name := range doc.Security[0] {
		def, ok := doc.SecurityDefinitions[name]
		if !ok || def.Type != "apiKey" || def.In != "header" || def.Name != "Authorization" || !strings.Contains(def.Description, "Bearer") {
			t.Errorf("security definition %q = %+v, want an Authorization header carrying Bearer <key>", name, def)
		}
	}
}
