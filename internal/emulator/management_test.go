package emulator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

func TestPostToConnectionReachesOnlyThatSocket(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{MockRoutes: map[string]string{"ping": "pong"}})
	alice, aliceID := a.connect(t)
	bob, bobID := a.connect(t)

	if err := post(t, a, bobID, `{"for":"bob"}`); err != nil {
		t.Fatalf("post: %v", err)
	}
	if got := read(t, bob); got != `{"for":"bob"}` {
		t.Errorf("bob got %q", got)
	}
	// Alice's next frame is her own pong, not Bob's message.
	send(t, alice, `{"action":"ping"}`)
	if got := read(t, alice); got != "pong" {
		t.Errorf("alice got %q, want only her pong", got)
	}
	if aliceID == bobID {
		t.Errorf("two connections share id %q", aliceID)
	}
}

func TestManagementCallsOnUnknownConnectionAreGone(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	id := aws.String("AAAAAAAAAAAAAAA=")

	calls := map[string]func() error{
		"PostToConnection": func() error {
			_, err := a.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: id, Data: []byte("x")})
			return err
		},
		"GetConnection": func() error {
			_, err := a.mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: id})
			return err
		},
		"DeleteConnection": func() error {
			_, err := a.mgmt.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: id})
			return err
		},
	}
	for name, call := range calls {
		var gone *types.GoneException
		if err := call(); !errors.As(err, &gone) {
			t.Errorf("%s: %v, want *types.GoneException", name, err)
		}
	}
}

func TestPostPayloadLimit(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	ws.SetReadLimit(1 << 20)

	const limit = 131072
	err := post(t, a, id, strings.Repeat("x", limit+1))
	var tooLarge *types.PayloadTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Fatalf("post of %d bytes: %v, want *types.PayloadTooLargeException", limit+1, err)
	}
	if err := post(t, a, id, strings.Repeat("y", limit)); err != nil {
		t.Fatalf("post of exactly %d bytes: %v", limit, err)
	}
	// The refused payload never reached the socket: the first frame is the
	// one at the limit.
	if got := read(t, ws); len(got) != limit || got[0] != 'y' {
		t.Errorf("first frame: %d bytes starting %q, want the %d-byte one", len(got), got[:1], limit)
	}
}

func TestGetConnection(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	before := time.Now().Truncate(time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, a.wsURL, &websocket.DialOptions{
		HTTPHeader: map[string][]string{"User-Agent": {"Mozilla/5.0 test"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	id := receive(t, a.connects).RequestContext.ConnectionID

	out, err := a.mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
	if err != nil {
		t.Fatalf("GetConnection: %v", err)
	}
	after := time.Now()
	if out.ConnectedAt == nil || out.ConnectedAt.Before(before) || out.ConnectedAt.After(after) {
		t.Errorf("connectedAt = %v, want between %v and %v", out.ConnectedAt, before, after)
	}
	if out.LastActiveAt == nil || out.LastActiveAt.Before(*out.ConnectedAt) {
		t.Errorf("lastActiveAt = %v, want at or after connectedAt %v", out.LastActiveAt, out.ConnectedAt)
	}
	if out.Identity == nil || aws.ToString(out.Identity.SourceIp) != "127.0.0.1" || aws.ToString(out.Identity.UserAgent) != "Mozilla/5.0 test" {
		t.Errorf("identity = %+v", out.Identity)
	}
}

func TestDeleteConnection(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	if _, err := a.mgmt.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); err != nil {
		t.Fatalf("DeleteConnection: %v", err)
	}
	if err := post(t, a, id, "late"); !errors.As(err, new(*types.GoneException)) {
		t.Errorf("post after delete: %v, want GoneException", err)
	}
	if code := readClose(t, ws); code != websocket.StatusNormalClosure {
		t.Errorf("client saw close status %v, want %v", code, websocket.StatusNormalClosure)
	}
	assertDisconnect(t, a, id, websocket.StatusNormalClosure)
	a.emu.Close()
	assertNone(t, a.disconnects, "second $disconnect")
}

func TestStage(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{Stage: "prod"})
	ws, id := a.connect(t)
	if err := post(t, a, id, "hello"); err != nil {
		t.Fatalf("post through /prod: %v", err)
	}
	if got := read(t, ws); got != "hello" {
		t.Errorf("got %q", got)
	}

	// AWS answers a wrong stage with 403, not 404, on both APIs.
	root := a.srv.URL
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, path := range []string{"/", "/dev"} {
		if _, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(root, "http")+path, nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("dial %s: %v (%+v), want 403", path, err, resp)
		}
	}
	for _, endpoint := range []string{root, root + "/dev"} {
		_, err := managementClient(endpoint).PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte("x")})
		if !errors.As(err, new(*types.ForbiddenException)) {
			t.Errorf("post through %s: %v, want *types.ForbiddenException", endpoint, err)
		}
	}
	// Only the first post reached the socket.
	if err := post(t, a, id, "again"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ws); got != "again" {
		t.Errorf("got %q after the refused posts", got)
	}
}

// TestConcurrentPosts posts to many sockets at once and checks each gets
// exactly its own frames, in order; under -race it exercises the
// connection map and per-socket write serialization.
func TestConcurrentPosts(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	const conns, perConn = 20, 10
	sockets := make([]*websocket.Conn, conns)
	ids := make([]string, conns)
	for i := range conns {
		sockets[i], ids[i] = a.connect(t)
	}

	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			for j := range perConn {
				if err := post(t, a, ids[i], fmt.Sprintf("%d/%d", i, j)); err != nil {
					t.Errorf("post %d/%d: %v", i, j, err)
				}
			}
		})
	}
	wg.Wait()
	for i, ws := range sockets {
		for j := range perConn {
			if got, want := read(t, ws), fmt.Sprintf("%d/%d", i, j); got != want {
				t.Fatalf("socket %d frame %d = %q, want %q", i, j, got, want)
			}
		}
	}
}

// TestManagementRequestShapes covers requests the Go SDK does not send but
// other callers do: .NET's escaped "%40connections", bodies without a
// Content-Length, presigned URLs, wrong methods and paths.
func TestManagementRequestShapes(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	escaped := a.httpURL + "/%40connections/" + url.PathEscape(id)
	// A reader of unknown length makes net/http send the body chunked.
	chunked := func(n int) io.Reader { return io.MultiReader(strings.NewReader(strings.Repeat("c", n))) }

	tests := []struct {
		name, method, url, auth string
		body                    io.Reader
		status                  int
		errorType               string
	}{
		{"escaped @", http.MethodPost, escaped, sigV4, strings.NewReader("via .NET"), http.StatusOK, ""},
		{"presigned URL", http.MethodPost, escaped + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00", "", strings.NewReader("presigned"), http.StatusOK, ""},
		{"chunked body over the limit", http.MethodPost, escaped, sigV4, chunked(131073), http.StatusRequestEntityTooLarge, "PayloadTooLargeException"},
		{"wrong method", http.MethodPut, escaped, sigV4, nil, http.StatusForbidden, "ForbiddenException"},
		{"no id", http.MethodPost, a.httpURL + "/@connections/", sigV4, nil, http.StatusForbidden, "ForbiddenException"},
		{"unknown path", http.MethodGet, a.httpURL + "/elsewhere", sigV4, nil, http.StatusForbidden, "ForbiddenException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, errorType, _ := rawCall(t, tt.method, tt.url, tt.auth, tt.body)
			if status != tt.status || errorType != tt.errorType {
				t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.url, status, errorType, tt.status, tt.errorType)
			}
		})
	}
	// Only the good posts reached the socket.
	for _, want := range []string{"via .NET", "presigned"} {
		if got := read(t, ws); got != want {
			t.Errorf("socket got %q, want %q", got, want)
		}
	}
}

// TestManagementStatusCodes checks the raw answers, which the SDK hides
// behind success: 200 for POST and GET, 204 for DELETE.
func TestManagementStatusCodes(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	target := a.httpURL + "/@connections/" + url.PathEscape(id)

	steps := []struct {
		method    string
		body      string
		status    int
		errorType string
	}{
		{http.MethodPost, "hi", http.StatusOK, ""},
		{http.MethodPost, strings.Repeat("x", 131073), http.StatusRequestEntityTooLarge, "PayloadTooLargeException"},
		{http.MethodGet, "", http.StatusOK, ""},
		{http.MethodDelete, "", http.StatusNoContent, ""},
		{http.MethodPost, "late", http.StatusGone, "GoneException"},
		{http.MethodGet, "", http.StatusGone, "GoneException"},
		{http.MethodDelete, "", http.StatusGone, "GoneException"},
	}
	for _, s := range steps {
		status, errorType, body := rawCall(t, s.method, target, sigV4, strings.NewReader(s.body))
		if status != s.status || errorType != s.errorType {
			t.Errorf("%s: %d %q (%s), want %d %q", s.method, status, errorType, body, s.status, s.errorType)
		}
	}
	if got := read(t, ws); got != "hi" {
		t.Errorf("socket got %q", got)
	}
}

// TestUnsignedCallsAreRefused sends what the SDK never would: calls
// without a SigV4 signature. AWS refuses them before looking at the path.
func TestUnsignedCallsAreRefused(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	target := a.httpURL + "/@connections/" + url.PathEscape(id)

	tests := []struct {
		name, method, url, auth string
	}{
		{"POST", http.MethodPost, target, ""},
		{"GET", http.MethodGet, target, ""},
		{"DELETE", http.MethodDelete, target, ""},
		{"unknown path", http.MethodGet, a.httpURL + "/elsewhere", ""},
		{"bearer token", http.MethodPost, target, "Bearer secret"},
		{"SigV2-style header", http.MethodPost, target, "AWS AKIDEXAMPLE:c2ln"},
		{"presigned URL without a signature", http.MethodPost, target + "?X-Amz-Algorithm=AWS4-HMAC-SHA256", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, errorType, body := rawCall(t, tt.method, tt.url, tt.auth, strings.NewReader("refused"))
			if status != http.StatusForbidden || errorType != "MissingAuthenticationTokenException" {
				t.Errorf("%d %q, want 403 MissingAuthenticationTokenException", status, errorType)
			}
			if got := decode[struct{ Message string }](t, body).Message; got != "Missing Authentication Token" {
				t.Errorf("message = %q, want AWS's %q", got, "Missing Authentication Token")
			}
		})
	}
	// Nothing reached the socket and the connection is still open: the
	// next frame is the first signed post.
	if err := post(t, a, id, "signed"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ws); got != "signed" {
		t.Errorf("socket got %q", got)
	}
}

// Every @connections answer carries x-amzn-RequestId, success or error, as
// AWS's do: the SDK reports it in results and errors (RequestID in its
// messages), and it is what AWS support asks for.
func TestManagementAnswersCarryARequestID(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	_, id := a.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	seen := map[string]string{}
	check := func(call, reqID string, ok bool) {
		t.Helper()
		if !ok || reqID == "" {
			t.Errorf("%s: no request id", call)
			return
		}
		if other, dup := seen[reqID]; dup {
			t.Errorf("%s and %s share request id %q", call, other, reqID)
		}
		seen[reqID] = call
	}
	errorID := func(call string, err error) {
		t.Helper()
		var re *awshttp.ResponseError
		if !errors.As(err, &re) {
			t.Fatalf("%s: %v, want an HTTP response error", call, err)
		}
		check(call, re.ServiceRequestID(), true)
	}

	post, err := a.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	reqID, ok := awsmiddleware.GetRequestIDMetadata(post.ResultMetadata)
	check("PostToConnection", reqID, ok)

	get, err := a.mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: &id})
	if err != nil {
		t.Fatal(err)
	}
	reqID, ok = awsmiddleware.GetRequestIDMetadata(get.ResultMetadata)
	check("GetConnection", reqID, ok)

	del, err := a.mgmt.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: &id})
	if err != nil {
		t.Fatal(err)
	}
	reqID, ok = awsmiddleware.GetRequestIDMetadata(del.ResultMetadata)
	check("DeleteConnection", reqID, ok)

	_, err = a.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: []byte("x")})
	errorID("PostToConnection on a gone connection", err)
	_, err = a.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: make([]byte, 128<<10+1)})
	errorID("PostToConnection too large", err)
	_, err = managementClient(a.httpURL+"/wrongstage").GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: &id})
	errorID("GetConnection on a wrong stage", err)

	// Unsigned calls are refused before anything else, still with an id.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.httpURL+"/@connections/"+url.PathEscape(id), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unsigned call: status %d, want 403", resp.StatusCode)
	}
	check("an unsigned call", resp.Header.Get("X-Amzn-RequestId"), true)
}
