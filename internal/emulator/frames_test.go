package emulator_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

// API Gateway refuses binary frames and closes with 1003; a binary frame
// that reads like a routable message must not be routed.
func TestBinaryFrameClosesWith1003(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{MockRoutes: map[string]string{"ping": "pong"}})
	ws, id := a.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageBinary, []byte(`{"action":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if code := readClose(t, ws); code != websocket.StatusUnsupportedData {
		t.Errorf("client saw close status %v, want %v", code, websocket.StatusUnsupportedData)
	}
	assertDisconnect(t, a, id, websocket.StatusUnsupportedData)
	assertNone(t, a.messages, "routed binary frame")
}

// AWS limits each frame to 32 KB and a message to 128 KB, so a larger
// message is accepted when it comes in frames of 32 KB or less.
func TestFragmentedMessages(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{Routes: map[string]emulator.Handler{"$default": replier}})

	for _, frames := range [][]int{
		{20 << 10, 20 << 10},                     // 40 KB in two frames
		{32 << 10, 32 << 10, 32 << 10, 32 << 10}, // exactly 128 KB
	} {
		ws, _ := a.connect(t)
		ws.SetReadLimit(1 << 20)
		msg := sendFragments(t, ws, frames)
		if got := read(t, ws); got != "$default|"+msg {
			t.Errorf("a %d-byte message in frames %v was not routed whole (reply of %d bytes)", len(msg), frames, len(got))
		}
	}

	// One byte over 128 KB: refused when the last frame's header says so.
	ws, id := a.connect(t)
	sendFragments(t, ws, []int{32 << 10, 32 << 10, 32 << 10, 32 << 10, 1})
	code, reason := readCloseReason(t, ws)
	if code != websocket.StatusMessageTooBig || !strings.Contains(reason, "128 KB") {
		t.Errorf("client saw close %v %q, want %v naming the 128 KB limit", code, reason, websocket.StatusMessageTooBig)
	}
	ev := assertDisconnect(t, a, id, websocket.StatusMessageTooBig)
	if r := *ev.RequestContext.DisconnectReason; r != reason {
		t.Errorf("disconnectReason = %q, want the client's close reason %q", r, reason)
	}
}

// sendFragments sends one text message in frames of the given sizes and
// returns it.
func sendFragments(t *testing.T, ws *websocket.Conn, sizes []int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w, err := ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for i, n := range sizes {
		part := strings.Repeat(string(rune('a'+i)), n)
		all.WriteString(part)
		if _, err := w.Write([]byte(part)); err != nil { // one frame per Write
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("closing the message: %v", err) // the server may have closed already
	}
	return all.String()
}

// readCloseReason reads until the server closes ws and returns its close
// frame's code and reason.
func readCloseReason(t *testing.T, ws *websocket.Conn) (websocket.StatusCode, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		_, _, err := ws.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("socket ended without a close frame: %v", err)
		}
		return ce.Code, ce.Reason
	}
}

// A text frame must be UTF-8 (RFC 6455, section 8.1): 1007, not routed.
func TestInvalidUTF8ClosesWith1007(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	ws, id := a.connect(t)
	send(t, ws, "{\"action\":\"x\xff\"}")
	if code := readClose(t, ws); code != websocket.StatusInvalidFramePayloadData {
		t.Errorf("client saw close status %v, want %v", code, websocket.StatusInvalidFramePayloadData)
	}
	assertDisconnect(t, a, id, websocket.StatusInvalidFramePayloadData)
	assertNone(t, a.messages, "routed invalid UTF-8")
}

// Frames from clients must be masked (RFC 6455, section 5.1): 1002.
func TestUnmaskedFrameClosesWith1002(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	conn, br, id := rawConnect(t, a)
	if _, err := conn.Write(frameHeader(0x1, false, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	if code, _ := readRawClose(t, conn, br, wait); code != websocket.StatusProtocolError {
		t.Errorf("close status %v, want %v", code, websocket.StatusProtocolError)
	}
	// Answer the close, as a client does, to end the handshake.
	if _, err := conn.Write(append(frameHeader(0x8, true, 2), 0x03, 0xea)); err != nil {
		t.Fatal(err)
	}
	assertDisconnect(t, a, id, websocket.StatusProtocolError)
	assertNone(t, a.messages, "routed unmasked frame")
}

// A header announcing more than 32 KB closes the connection at once, with
// 1009 and a reason in the API's terms: the payload is never waited for.
func TestOversizedFrameHeaderClosesAtOnce(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	conn, br, _ := rawConnect(t, a)
	// A 1 MB frame's header, and none of its payload.
	if _, err := conn.Write(frameHeader(0x1, true, 1<<20)); err != nil {
		t.Fatal(err)
	}
	// Sooner than the 5 s any wait for a peer would take.
	code, reason := readRawClose(t, conn, br, 3*time.Second)
	if code != websocket.StatusMessageTooBig || !strings.Contains(reason, "32 KB") {
		t.Errorf("close %v %q, want %v naming the 32 KB limit", code, reason, websocket.StatusMessageTooBig)
	}
}

// rawConnect opens a WebSocket by hand, for frames no client library sends.
func rawConnect(t *testing.T, a *testAPI) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", a.host, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", a.host)
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return conn, br, receive(t, a.connects).RequestContext.ConnectionID
}

// frameHeader is a final frame's header announcing length payload bytes,
// with a masking key of zeros when masked, which leaves the payload as it is.
func frameHeader(opcode byte, masked bool, length int) []byte {
	h := []byte{0x80 | opcode, 0}
	switch {
	case length < 126:
		h[1] = byte(length)
	case length <= 0xffff:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(length))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, uint64(length))
	}
	if masked {
		h[1] |= 0x80
		h = append(h, 0, 0, 0, 0)
	}
	return h
}

// readRawClose reads server frames until a close frame, within d, and
// returns its code and reason.
func readRawClose(t *testing.T, conn net.Conn, br *bufio.Reader, d time.Duration) (websocket.StatusCode, string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(d))
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			t.Fatalf("no close frame within %v: %v", d, err)
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			_, _ = io.ReadFull(br, ext[:])
			n = int(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			_, _ = io.ReadFull(br, ext[:])
			n = int(binary.BigEndian.Uint64(ext[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatalf("no close frame within %v: %v", d, err)
		}
		if h[0]&0x0f == 0x8 && n >= 2 {
			return websocket.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
	}
}
