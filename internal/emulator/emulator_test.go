package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

// wait bounds every wait for something asynchronous.
const wait = 5 * time.Second

type event = events.APIGatewayWebsocketProxyRequest

// testAPI is an emulator on a real listener with a real management client.
// Its $connect, $disconnect and $default routes record their events unless
// the test configures its own; $default answers nothing (a one-way route).
type testAPI struct {
	emu         *emulator.Emulator
	srv         *httptest.Server
	wsURL       string // ws://127.0.0.1:port[/stage]
	httpURL     string // http://127.0.0.1:port[/stage]
	host        string
	mgmt        *apigatewaymanagementapi.Client
	connects    chan event
	disconnects chan event
	messages    chan event // $default's
}

func newTestAPI(t testing.TB, cfg emulator.Config) *testAPI {
	t.Helper()
	a := &testAPI{connects: make(chan event, 100), disconnects: make(chan event, 100), messages: make(chan event, 100)}
	routes := map[string]emulator.Handler{
		emulator.RouteConnect:    recorder(a.connects),
		emulator.RouteDisconnect: recorder(a.disconnects),
		emulator.RouteDefault:    recorder(a.messages),
	}
	for k, h := range cfg.Routes {
		routes[k] = h
	}
	cfg.Routes = routes
	cfg.Logger = slog.New(slog.DiscardHandler)

	a.emu = emulator.New(cfg)
	a.srv = httptest.NewServer(a.emu)
	t.Cleanup(a.srv.Close)
	t.Cleanup(a.emu.Close) // runs first: sockets close before the listener

	a.httpURL = a.srv.URL
	if cfg.Stage != "" {
		a.httpURL += "/" + cfg.Stage
	}
	a.wsURL = "ws" + strings.TrimPrefix(a.httpURL, "http")
	a.host = strings.TrimPrefix(a.srv.URL, "http://")
	a.mgmt = managementClient(a.httpURL)
	return a
}

// managementClient is the real SDK client, as the fan-out builds it.
func managementClient(endpoint string) *apigatewaymanagementapi.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	}
	return apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
}

// noRetries is a management client that makes exactly one request per
// call, so that a test can count what the emulator answered.
func noRetries(a *testAPI) *apigatewaymanagementapi.Client {
	return apigatewaymanagementapi.New(a.mgmt.Options(), func(o *apigatewaymanagementapi.Options) {
		o.Retryer = aws.NopRetryer{}
	})
}

// sigV4 is an Authorization header shaped like the SDK's; the emulator
// checks the shape, not the signature.
const sigV4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000"

// rawCall sends a request by hand, for shapes the SDK never sends, and
// returns the status, the x-amzn-ErrorType header and the body.
func rawCall(t testing.TB, method, url, auth string, body io.Reader) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), string(b)
}

// recorder is a handler that accepts and records every event.
func recorder(ch chan<- event) emulator.Handler {
	return func(_ context.Context, req event) (events.APIGatewayProxyResponse, error) {
		ch <- req
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
	}
}

// replier answers every message with a body naming its route and echoing
// the frame.
func replier(_ context.Context, req event) (events.APIGatewayProxyResponse, error) {
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: req.RequestContext.RouteKey + "|" + req.Body}, nil
}

// connect dials the API and returns the socket and its connection id.
func (a *testAPI) connect(t testing.TB) (*websocket.Conn, string) {
	t.Helper()
	ws := a.dial(t, a.wsURL)
	return ws, receive(t, a.connects).RequestContext.ConnectionID
}

func (a *testAPI) dial(t testing.TB, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

func receive[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		var zero T
		t.Fatalf("nothing received in %v", wait)
		return zero
	}
}

// assertNone checks ch is empty; call it after a synchronizing step (such
// as Emulator.Close, which waits for every $disconnect), never after a sleep.
func assertNone[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %+v", what, v)
	default:
	}
}

func send(t testing.TB, ws *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
}

func read(t testing.TB, ws *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("frame type = %v, want text", typ)
	}
	return string(b)
}

// readClose reads until the server closes the socket and returns the
// close status it sent.
func readClose(t testing.TB, ws *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("socket still open after %v", wait)
			}
			return websocket.CloseStatus(err)
		}
	}
}

func decode[T any](t testing.TB, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// awaitClose reads ws in the background, as a browser does, and reports
// the close status the server sent (-1 for none).
func awaitClose(ws *websocket.Conn) <-chan websocket.StatusCode {
	ch := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				ch <- websocket.CloseStatus(err)
				return
			}
		}
	}()
	return ch
}

func post(t testing.TB, a *testAPI, id, data string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := a.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id),
		Data:         []byte(data),
	})
	return err
}

func assertDisconnect(t testing.TB, a *testAPI, id string, code websocket.StatusCode) event {
	t.Helper()
	ev := receive(t, a.disconnects)
	rc := ev.RequestContext
	if rc.ConnectionID != id || rc.RouteKey != "$disconnect" || rc.EventType != "DISCONNECT" {
		t.Errorf("$disconnect event for %s: got connection %q, route %q, type %q", id, rc.ConnectionID, rc.RouteKey, rc.EventType)
	}
	if rc.DisconnectStatusCode != int64(code) {
		t.Errorf("disconnectStatusCode = %d, want %d", rc.DisconnectStatusCode, code)
	}
	if rc.DisconnectReason == nil {
		t.Error("disconnectReason missing")
	}
	return ev
}

func TestRouteSelection(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{
		Routes: map[string]emulator.Handler{
			"$default":  replier,
			"subscribe": replier,
		},
		MockRoutes: map[string]string{"ping": `{"type":"pong"}`},
	})

	tests := []struct {
		name, frame, reply string
	}{
		{"action selects its route", `{"action":"subscribe","topics":["a"]}`, `subscribe|{"action":"subscribe","topics":["a"]}`},
		{"unknown action goes to $default", `{"action":"nope"}`, `$default|{"action":"nope"}`},
		{"non-JSON goes to $default", `hello`, `$default|hello`},
		{"non-string action goes to $default", `{"action":7}`, `$default|{"action":7}`},
		{"JSON array goes to $default", `["subscribe"]`, `$default|["subscribe"]`},
		{"reserved route cannot be selected", `{"action":"$disconnect"}`, `$default|{"action":"$disconnect"}`},
		{"action is case sensitive", `{"action":"Subscribe"}`, `$default|{"action":"Subscribe"}`},
		{"mock route answers without a handler", `{"action":"ping"}`, `{"type":"pong"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ws, _ := a.connect(t)
			send(t, ws, tt.frame)
			if got := read(t, ws); got != tt.reply {
				t.Errorf("reply = %q, want %q", got, tt.reply)
			}
		})
	}
}

func TestFramesOfAConnectionAreHandledInOrder(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{
		Routes: map[string]emulator.Handler{
			"$default": replier,
			// A one-way route: its empty response sends nothing back.
			"quiet": func(context.Context, event) (events.APIGatewayProxyResponse, error) {
				return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
			},
		},
	})
	ws, _ := a.connect(t)
	for i := range 20 {
		send(t, ws, `{"action":"quiet"}`)
		send(t, ws, fmt.Sprint(i))
	}
	for i := range 20 {
		if got, want := read(t, ws), fmt.Sprintf("$default|%d", i); got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
}

// TestHandlersGetTheIntegrationTimeout checks that a handler's context
// carries API Gateway's 29-second integration timeout, as a Lambda's would.
func TestHandlersGetTheIntegrationTimeout(t *testing.T) {
	t.Parallel()
	left := make(chan time.Duration, 1)
	a := newTestAPI(t, emulator.Config{Routes: map[string]emulator.Handler{
		"$default": func(ctx context.Context, _ event) (events.APIGatewayProxyResponse, error) {
			deadline, ok := ctx.Deadline()
			if !ok {
				deadline = time.Time{}
			}
			left <- time.Until(deadline)
			return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
		},
	}})
	ws, _ := a.connect(t)
	send(t, ws, "x")
	// Generous below: the handler may start late on a loaded machine.
	if d := receive(t, left); d > 29*time.Second || d < 20*time.Second {
		t.Errorf("handler deadline %v away, want 29 s", d)
	}
}

// gatewayError is the frame API Gateway sends for a message it could not
// route or whose integration failed.
type gatewayError struct {
	Message      string `json:"message"`
	ConnectionID string `json:"connectionId"`
	RequestID    string `json:"requestId"`
}

func TestGatewayErrorFrames(t *testing.T) {
	t.Parallel()
	failing := func(context.Context, event) (events.APIGatewayProxyResponse, error) {
		return events.APIGatewayProxyResponse{}, errors.New("store unavailable")
	}
	panicking := func(context.Context, event) (events.APIGatewayProxyResponse, error) {
		panic("nil map")
	}
	tests := []struct {
		name    string
		routes  map[string]emulator.Handler
		frame   string
		message string
	}{
		{"no route and no $default", map[string]emulator.Handler{"subscribe": replier, "$default": nil}, `{"action":"other"}`, "Forbidden"},
		{"handler error", map[string]emulator.Handler{"subscribe": failing}, `{"action":"subscribe"}`, "Internal server error"},
		{"handler panic", map[string]emulator.Handler{"$default": panicking}, `x`, "Internal server error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newTestAPI(t, emulator.Config{Routes: tt.routes})
			ws, id := a.connect(t)
			send(t, ws, tt.frame)
			got := decode[gatewayError](t, read(t, ws))
			if got.Message != tt.message || got.ConnectionID != id || got.RequestID == "" {
				t.Errorf("frame = %+v, want message %q, connectionId %q and a requestId", got, tt.message, id)
			}
			// The connection survives a failed integration.
			send(t, ws, tt.frame)
			if got := decode[gatewayError](t, read(t, ws)); got.Message != tt.message {
				t.Errorf("second frame = %+v", got)
			}
		})
	}
}

func TestConnectRefusal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		resp   events.APIGatewayProxyResponse
		err    error
		status int
	}{
		{"unauthorized", events.APIGatewayProxyResponse{StatusCode: http.StatusUnauthorized}, nil, http.StatusUnauthorized},
		{"forbidden", events.APIGatewayProxyResponse{StatusCode: http.StatusForbidden}, nil, http.StatusForbidden},
		{"handler error", events.APIGatewayProxyResponse{}, errors.New("boom"), http.StatusInternalServerError},
		{"no status code", events.APIGatewayProxyResponse{}, nil, http.StatusBadGateway},
		{"invalid status code", events.APIGatewayProxyResponse{StatusCode: 42}, nil, http.StatusBadGateway},
		{"informational status code", events.APIGatewayProxyResponse{StatusCode: http.StatusSwitchingProtocols}, nil, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			called := make(chan event, 1)
			a := newTestAPI(t, emulator.Config{Routes: map[string]emulator.Handler{
				"$connect": func(_ context.Context, req event) (events.APIGatewayProxyResponse, error) {
					called <- req
					return tt.resp, tt.err
				},
			}})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, a.wsURL, nil)
			if err == nil {
				ws.CloseNow()
				t.Fatal("dial succeeded, want the handshake refused")
			}
			if resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("handshake response = %+v (%v), want status %d", resp, err, tt.status)
			}
			id := receive(t, called).RequestContext.ConnectionID
			if err := post(t, a, id, "x"); !errors.As(err, new(*types.GoneException)) {
				t.Errorf("post to refused connection: %v, want GoneException", err)
			}
			if ids := a.emu.ConnectionIDs(); len(ids) != 0 {
				t.Errorf("open connections = %v, want none", ids)
			}
			a.emu.Close() // waits for every $disconnect there is to fire
			assertNone(t, a.disconnects, "$disconnect for a refused connection")
		})
	}
}

// TestPostFromConnectIsGone posts from $connect to the connection being
// made: AWS answers 410, since the connection exists once $connect returns.
func TestPostFromConnectIsGone(t *testing.T) {
	t.Parallel()
	var api atomic.Pointer[testAPI] // set before anyone dials
	early := make(chan error, 1)
	a := newTestAPI(t, emulator.Config{Routes: map[string]emulator.Handler{
		"$connect": func(ctx context.Context, req event) (events.APIGatewayProxyResponse, error) {
			a := api.Load()
			_, err := a.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
				ConnectionId: aws.String(req.RequestContext.ConnectionID),
				Data:         []byte("too early"),
			})
			early <- err
			a.connects <- req
			return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
		},
	}})
	api.Store(a)
	ws, id := a.connect(t)
	if err := receive(t, early); !errors.As(err, new(*types.GoneException)) {
		t.Errorf("post from $connect: %v, want GoneException", err)
	}
	if err := post(t, a, id, "connected"); err != nil {
		t.Fatalf("post after $connect: %v", err)
	}
	if got := read(t, ws); got != "connected" {
		t.Errorf("first frame %q, want the post made after $connect", got)
	}
}

func TestWithoutConnectRouteEveryoneIsAccepted(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{Routes: map[string]emulator.Handler{"$connect": nil}})
	a.dial(t, a.wsURL)
	if ids := a.emu.ConnectionIDs(); len(ids) != 1 {
		t.Fatalf("open connections = %v, want one", ids)
	}
}

func TestMalformedHandshakeNeverReachesConnect(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	handshake := http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	tests := []struct {
		name   string
		method string
		drop   string // header left out
	}{
		{"plain GET", http.MethodGet, "Upgrade"},
		{"not an upgrade connection", http.MethodGet, "Connection"},
		{"no version", http.MethodGet, "Sec-Websocket-Version"},
		{"no key", http.MethodGet, "Sec-Websocket-Key"},
		{"POST", http.MethodPost, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http"+strings.TrimPrefix(a.wsURL, "ws")+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = handshake.Clone()
			req.Header.Del(tt.drop)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUpgradeRequired {
				t.Errorf("status = %d, want %d", resp.StatusCode, http.StatusUpgradeRequired)
			}
		})
	}
	a.emu.Close()
	assertNone(t, a.connects, "$connect for a malformed handshake")
}

func TestConnectChoosesTheSubprotocol(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{Routes: map[string]emulator.Handler{
		"$connect": func(context.Context, event) (events.APIGatewayProxyResponse, error) {
			return events.APIGatewayProxyResponse{
				StatusCode: http.StatusOK,
				Headers:    map[string]string{"Sec-WebSocket-Protocol": "wsgateway.v1"},
			}, nil
		},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, a.wsURL, &websocket.DialOptions{Subprotocols: []string{"wsgateway.v1", "other"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if got := ws.Subprotocol(); got != "wsgateway.v1" {
		t.Errorf("subprotocol = %q, want the one $connect chose", got)
	}
}
