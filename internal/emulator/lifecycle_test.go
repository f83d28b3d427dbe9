package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

func TestClientCloseFiresDisconnectOnce(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	if err := ws.Close(websocket.StatusGoingAway, "tab closed"); err != nil {
		t.Fatal(err)
	}
	assertDisconnect(t, a, id, websocket.StatusGoingAway)
	if err := post(t, a, id, "late"); !errors.As(err, new(*types.GoneException)) {
		t.Errorf("post after close: %v, want GoneException", err)
	}
	a.emu.Close()
	assertNone(t, a.disconnects, "second $disconnect")
}

func TestAbruptClientLossIsAbnormalClosure(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	ws.CloseNow() // TCP closed without a close frame
	assertDisconnect(t, a, id, websocket.StatusAbnormalClosure)
}

func TestDropSkipsDisconnect(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	kept, keptID := a.connect(t)
	keptClosed := awaitClose(kept)

	if !a.emu.Drop(id) {
		t.Fatal("Drop of an open connection returned false")
	}
	if a.emu.Drop(id) {
		t.Error("second Drop returned true")
	}
	if code := readClose(t, ws); code != -1 {
		t.Errorf("client saw close status %v, want the socket cut without one", code)
	}
	if err := post(t, a, id, "late"); !errors.As(err, new(*types.GoneException)) {
		t.Errorf("post after drop: %v, want GoneException", err)
	}
	if ids := a.emu.ConnectionIDs(); len(ids) != 1 || ids[0] != keptID {
		t.Errorf("open connections = %v, want only %s", ids, keptID)
	}

	a.emu.Close() // fires $disconnect for what is still open, and waits
	assertDisconnect(t, a, keptID, websocket.StatusGoingAway)
	assertNone(t, a.disconnects, "$disconnect after Drop")
	if code := receive(t, keptClosed); code != websocket.StatusGoingAway {
		t.Errorf("open client saw close status %v, want %v", code, websocket.StatusGoingAway)
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  emulator.Config
		// keepActive sends frames all along, which resets only the idle timer.
		keepActive bool
	}{
		{"idle timeout", emulator.Config{IdleTimeout: 200 * time.Millisecond}, false},
		{"maximum connection duration", emulator.Config{IdleTimeout: time.Hour, MaxConnectionDuration: 300 * time.Millisecond}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cfg.MockRoutes = map[string]string{"ping": "pong"}
			a := newTestAPI(t, tt.cfg)
			ws, id := a.connect(t)
			if tt.keepActive {
				go func() {
					for ws.Write(context.Background(), websocket.MessageText, []byte(`{"action":"ping"}`)) == nil {
						time.Sleep(20 * time.Millisecond)
					}
				}()
			}
			if code := readClose(t, ws); code != websocket.StatusGoingAway {
				t.Errorf("client saw close status %v, want %v", code, websocket.StatusGoingAway)
			}
			assertDisconnect(t, a, id, websocket.StatusGoingAway)
		})
	}
}

// TestActivityDefersIdleTimeout keeps a connection busy for three idle
// timeouts, in one direction only, and checks it is still open.
func TestActivityDefersIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 400 * time.Millisecond
	tests := []struct {
		name     string
		activity func(t *testing.T, a *testAPI, ws *websocket.Conn, id string)
	}{
		{"frames from the client", func(t *testing.T, a *testAPI, ws *websocket.Conn, _ string) {
			send(t, ws, "one-way")
			receive(t, a.messages)
		}},
		{"posts to the client", func(t *testing.T, a *testAPI, ws *websocket.Conn, id string) {
			if err := post(t, a, id, "push"); err != nil {
				t.Fatalf("post: %v", err)
			}
			read(t, ws)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newTestAPI(t, emulator.Config{IdleTimeout: idle})
			ws, id := a.connect(t)
			start := time.Now()
			for time.Since(start) < 3*idle {
				tt.activity(t, a, ws, id)
				time.Sleep(idle / 8)
			}
			if _, err := a.mgmt.GetConnection(context.Background(), &apigatewaymanagementapi.GetConnectionInput{ConnectionId: &id}); err != nil {
				t.Fatalf("connection gone after %v of activity: %v", time.Since(start), err)
			}
		})
	}
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{Routes: map[string]emulator.Handler{"$default": replier}})

	ws, _ := a.connect(t)
	atLimit := strings.Repeat("a", 32768)
	send(t, ws, atLimit)
	ws.SetReadLimit(1 << 20)
	if got := read(t, ws); got != "$default|"+atLimit {
		t.Fatalf("a frame of exactly 32768 bytes was not routed (reply of %d bytes)", len(got))
	}

	// One frame of 32769 bytes; the reason speaks of the API's limit, not
	// of the library that read the frame.
	ws, id := a.connect(t)
	send(t, ws, strings.Repeat("a", 32769))
	code, reason := readCloseReason(t, ws)
	if code != websocket.StatusMessageTooBig || !strings.Contains(reason, "32 KB") {
		t.Errorf("client saw close %v %q, want %v naming the 32 KB limit", code, reason, websocket.StatusMessageTooBig)
	}
	ev := assertDisconnect(t, a, id, websocket.StatusMessageTooBig)
	if r := *ev.RequestContext.DisconnectReason; r != reason {
		t.Errorf("disconnectReason = %q, want the client's close reason %q", r, reason)
	}
}

func TestCloseDisconnectsEveryoneAndRefusesNewcomers(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws1, id1 := a.connect(t)
	ws2, id2 := a.connect(t)
	// Clients that read answer the close handshake at once.
	closed := []<-chan websocket.StatusCode{awaitClose(ws1), awaitClose(ws2)}

	a.emu.Close()
	got := map[string]int64{}
	for range 2 {
		rc := receive(t, a.disconnects).RequestContext
		got[rc.ConnectionID] = rc.DisconnectStatusCode
	}
	if got[id1] != 1001 || got[id2] != 1001 {
		t.Errorf("$disconnect status by connection = %v, want 1001 for %s and %s", got, id1, id2)
	}
	for _, ch := range closed {
		if code := receive(t, ch); code != websocket.StatusGoingAway {
			t.Errorf("client saw close status %v, want %v", code, websocket.StatusGoingAway)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, resp, err := websocket.Dial(ctx, a.wsURL, nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: %v (%+v), want 503", err, resp)
	}
}

// TestSlowClientIsThrottledThenGone fills the buffer of a client that
// never reads. Posts are answered at once, never waiting on the client: 200
// while its buffer has room, then 429 LimitExceededException, as AWS
// answers when the client-side buffer is full. A socket that takes nothing
// for WriteTimeout is cut, and is gone from then on.
func TestSlowClientIsThrottledThenGone(t *testing.T) {
	t.Parallel()
	const writeTimeout = 2 * time.Second
	a := newTestAPI(t, emulator.Config{WriteTimeout: writeTimeout})
	mgmt := noRetries(a)
	_, id := a.connect(t) // never read from
	chunk := []byte(strings.Repeat("z", 128<<10))

	for i := range 1000 {
		start := time.Now()
		_, err := mgmt.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: chunk})
		if took := time.Since(start); took > writeTimeout/2 {
			t.Fatalf("post %d took %v: it waited on the client", i, took)
		}
		if err == nil {
			continue
		}
		if !errors.As(err, new(*types.LimitExceededException)) {
			t.Fatalf("post %d: %v, want *types.LimitExceededException", i, err)
		}
		if i > 100 {
			t.Errorf("the buffer took %d posts of 128 KB before it was full", i)
		}
		assertDisconnect(t, a, id, websocket.StatusAbnormalClosure)
		if err := post(t, a, id, "late"); !errors.As(err, new(*types.GoneException)) {
			t.Errorf("post after the socket was cut: %v, want GoneException", err)
		}
		return
	}
	t.Fatal("a client that never reads took 128 MB")
}
