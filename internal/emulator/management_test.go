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
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/smithy-go"
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

	root := strings.TrimSuffix(a.wsURL, "/prod")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, resp, err := websocket.Dial(ctx, root+"/", nil); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("dial without the stage: %v (%+v), want 404", err, resp)
	}
	unstaged := managementClient("http" + strings.TrimPrefix(root, "ws"))
	_, err := unstaged.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte("x")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "NotFoundException" {
		t.Errorf("post without the stage: %v, want NotFoundException", err)
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
// Content-Length, wrong methods and paths.
func TestManagementRequestShapes(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	base := "http" + strings.TrimPrefix(a.wsURL, "ws")
	escaped := base + "/%40connections/" + url.PathEscape(id)
	// A reader of unknown length makes net/http send the body chunked.
	chunked := func(n int) io.Reader { return io.MultiReader(strings.NewReader(strings.Repeat("c", n))) }

	tests := []struct {
		name, method, url string
		body              io.Reader
		status            int
		errorType         string
	}{
		{"escaped @", http.MethodPost, escaped, strings.NewReader("via .NET"), http.StatusOK, ""},
		{"chunked body over the limit", http.MethodPost, escaped, chunked(131073), http.StatusRequestEntityTooLarge, "PayloadTooLargeException"},
		{"wrong method", http.MethodPut, escaped, nil, http.StatusMethodNotAllowed, "MethodNotAllowedException"},
		{"no id", http.MethodPost, base + "/@connections/", nil, http.StatusNotFound, "NotFoundException"},
		{"unknown path", http.MethodGet, base + "/elsewhere", nil, http.StatusNotFound, "NotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("X-Amzn-ErrorType") != tt.errorType {
				t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.url, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tt.status, tt.errorType)
			}
		})
	}
	// Only the one good post reached the socket.
	if got := read(t, ws); got != "via .NET" {
		t.Errorf("socket got %q", got)
	}
}
