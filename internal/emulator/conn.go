package emulator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"golang.org/x/net/http/httpguts"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// conn is one client connection. Its read loop runs on the goroutine
// net/http gave the upgrade request; coder/websocket serializes writes.
type conn struct {
	id          string
	connectedAt time.Time
	domainName  string // the request's Host, as API Gateway reports it
	sourceIP    string
	userAgent   string

	ready chan struct{}   // closed once the handshake has ended
	ws    *websocket.Conn // set before ready is closed; nil if the handshake failed

	lastActive atomic.Int64 // unix nanoseconds of the last frame either way
	timer      *time.Timer  // enforces the idle timeout and maximum duration
	closing    atomic.Pointer[closeStatus]
	dropped    atomic.Bool

	// One frame is written at a time; writeTimer cuts the socket under a
	// write that outlasts the write timeout. Created by the first write.
	writeMu    sync.Mutex
	writeTimer *time.Timer
}

// closeStatus is why the server closed a connection, reported to
// $disconnect as disconnectStatusCode and disconnectReason.
type closeStatus struct {
	code   websocket.StatusCode
	reason string
}

// accepted waits for the handshake and reports whether it succeeded.
func (c *conn) accepted() bool {
	<-c.ready
	return c.ws != nil
}

func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// upgrade runs $connect and, if it accepts, the connection.
func (e *Emulator) upgrade(w http.ResponseWriter, r *http.Request) {
	// Like API Gateway, check the handshake before $connect: a plain GET (a
	// browser tab, a probe) must not reach it.
	if !isHandshake(r) {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "this is a WebSocket endpoint: connect with ws://", http.StatusUpgradeRequired)
		return
	}
	now := time.Now()
	c := &conn{
		id:          newID(),
		connectedAt: now,
		domainName:  r.Host,
		sourceIP:    sourceIP(r),
		userAgent:   r.UserAgent(),
		ready:       make(chan struct{}),
	}
	c.touch()

	// API Gateway holds the upgrade until $connect answers: an error or a
	// non-2xx status refuses the connection, and no $disconnect follows.
	if h := e.routes[RouteConnect]; h != nil {
		resp, err := e.invoke(h, e.connectEvent(c, r, now))
		if status := connectRefusal(resp, err); status != 0 {
			e.log.Info("$connect refused the connection", "connection_id", c.id, "status", status, "error", err)
			http.Error(w, http.StatusText(status), status)
			return
		}
		// A client asking for subprotocols gets the one $connect chose.
		if p := resp.Headers["Sec-WebSocket-Protocol"]; p != "" {
			w.Header().Set("Sec-WebSocket-Protocol", p)
		}
	}

	// Registered before the handshake so that a management call racing a
	// fresh connection waits for it instead of getting 410.
	if !e.register(c) {
		close(c.ready)
		http.Error(w, "the emulator is shutting down", http.StatusServiceUnavailable)
		return
	}
	// API Gateway checks no Origin and negotiates no compression.
	ws, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	c.ws = ws
	close(c.ready)
	if err != nil {
		// $connect was told the client connected, so it hears it left.
		e.log.Warn("WebSocket handshake failed after $connect", "connection_id", c.id, "error", err)
		e.finish(c, closeStatus{websocket.StatusAbnormalClosure, "handshake failed"})
		return
	}
	e.log.Debug("connected", "connection_id", c.id, "source_ip", c.sourceIP)
	// A goroutine of its own, so that the server's goroutine, its stack
	// grown by $connect, ends here: an idle connection keeps only a
	// reader's small stack.
	go e.serve(c)
}

// Buffer sizes of a connection's socket. net/http hands a hijacked
// connection over with 4 KiB for reading and 4 KiB for writing, kept for
// its whole life: most of what an idle connection costs. Client frames
// are small (a larger one is read straight into its message), and most
// messages fit the write buffer; a larger one costs a second write.
const (
	readBufferBytes  = 512
	writeBufferBytes = 2048
)

// smallBuffers hijacks the connection for coder/websocket with buffers of
// readBufferBytes and writeBufferBytes.
type smallBuffers struct{ http.ResponseWriter }

func (s smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// What the server read past the handshake (a first frame) stays
	// buffered in the new reader, where Accept looks for it.
	n := brw.Reader.Buffered()
	leftover, _ := brw.Reader.Peek(n)
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(leftover)), conn), max(readBufferBytes, n))
	if _, err := br.Peek(n); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, writeBufferBytes)), nil
}

// isHandshake reports whether r is a well-formed WebSocket opening
// handshake (RFC 6455, section 4.2.1).
func isHandshake(r *http.Request) bool {
	return r.Method == http.MethodGet &&
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") &&
		httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "websocket") &&
		r.Header.Get("Sec-WebSocket-Version") == "13" &&
		r.Header.Get("Sec-WebSocket-Key") != ""
}

// connectRefusal returns the status that refuses the upgrade, or 0 to
// accept it.
func connectRefusal(resp events.APIGatewayProxyResponse, err error) int {
	switch code := resp.StatusCode; {
	case err != nil:
		return http.StatusInternalServerError
	case code >= 200 && code <= 299:
		return 0
	case code >= 300 && code <= 599:
		return code
	default:
		// No status (or a nonsense one) is a malformed proxy response.
		return http.StatusBadGateway
	}
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serve reads the client's frames in order until the connection ends, then
// fires $disconnect.
func (e *Emulator) serve(c *conn) {
	c.ws.SetReadLimit(maxFrameBytes)
	// Created idle and armed after the assignment, so that expire always
	// sees c.timer (Reset orders the two for the race detector too).
	c.timer = time.AfterFunc(math.MaxInt64, func() { e.expire(c) })
	c.timer.Reset(min(e.idleTimeout, e.maxDuration))
	defer c.timer.Stop()

	for {
		// A context without Done keeps coder/websocket from arming a
		// watchdog per read; closing the socket is what ends a read.
		_, body, err := c.ws.Read(context.Background())
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				// The library has sent 1009; finish the handshake.
				e.closeConn(c, websocket.StatusMessageTooBig, "Message too big")
			}
			e.finish(c, disconnectStatus(c, err))
			return
		}
		c.touch()
		// The route runs on a goroutine of its own, one frame at a time:
		// the stack a handler grows goes with it, instead of staying with
		// the connection for its life.
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.dispatch(c, body)
		}()
		<-done
	}
}

// disconnectStatus prefers the reason the server closed for, then the
// client's close frame; a connection that just ended is 1006.
func disconnectStatus(c *conn, err error) closeStatus {
	if s := c.closing.Load(); s != nil {
		return *s
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return closeStatus{ce.Code, ce.Reason}
	}
	return closeStatus{websocket.StatusAbnormalClosure, ""}
}

// expire closes c once it has been idle for the idle timeout or open for
// the maximum duration, and otherwise re-arms for whichever comes first.
func (e *Emulator) expire(c *conn) {
	now := time.Now()
	deadline := min(
		time.Unix(0, c.lastActive.Load()).Add(e.idleTimeout).UnixNano(),
		c.connectedAt.Add(e.maxDuration).UnixNano(),
	)
	if wait := time.Duration(deadline - now.UnixNano()); wait > 0 {
		c.timer.Reset(wait)
		return
	}
	e.log.Debug("connection expired", "connection_id", c.id)
	e.closeConn(c, websocket.StatusGoingAway, "Going away")
}

// closeConn closes c from the server side with code and reason; the read
// loop then ends and reports them to $disconnect. It blocks for the close
// handshake (at most a few seconds).
func (e *Emulator) closeConn(c *conn, code websocket.StatusCode, reason string) {
	e.remove(c)
	if c.closing.CompareAndSwap(nil, &closeStatus{code, reason}) {
		_ = c.ws.Close(code, reason)
	}
}

// finish is the end of every registered connection: it fires $disconnect
// exactly once, unless the connection was dropped or its $disconnect is
// lost on purpose.
func (e *Emulator) finish(c *conn, status closeStatus) {
	defer e.live.Done()
	e.remove(c)
	if c.ws != nil {
		_ = c.ws.CloseNow()
	}
	lost := c.dropped.Load() || e.loseDisconnect()
	e.log.Debug("disconnected", "connection_id", c.id, "code", int(status.code), "reason", status.reason, "disconnect_lost", lost)
	if lost {
		return
	}
	h := e.routes[RouteDisconnect]
	if h == nil {
		return
	}
	if _, err := e.invoke(h, e.disconnectEvent(c, status)); err != nil {
		e.log.Error("$disconnect handler failed", "connection_id", c.id, "error", err)
	}
}

// dispatch routes one client frame like API Gateway's
// $request.body.action and sends the route's reply, if any, back.
func (e *Emulator) dispatch(c *conn, body []byte) {
	key := e.route(body)
	var reply []byte
	if mock, ok := e.mocks[key]; ok {
		reply = []byte(mock)
	} else {
		req := e.messageEvent(c, key, body)
		reply = e.call(c, key, req)
	}
	if len(reply) == 0 {
		return
	}
	if err := e.send(c, reply); err != nil {
		e.log.Debug("route reply not delivered", "connection_id", c.id, "route", key, "error", err)
	}
}

// route returns the key of the route that takes body: the route named by
// its action, else $default.
func (e *Emulator) route(body []byte) string {
	key := wsproto.Action(body)
	// Messages cannot select $connect or $disconnect.
	if key == "" || strings.HasPrefix(key, "$") {
		return RouteDefault
	}
	if _, ok := e.routes[key]; ok {
		return key
	}
	if _, ok := e.mocks[key]; ok {
		return key
	}
	return RouteDefault
}

// call invokes the route's handler and returns what API Gateway would send
// the client: the response body, or API Gateway's own error frame.
func (e *Emulator) call(c *conn, key string, req events.APIGatewayWebsocketProxyRequest) []byte {
	reqID := req.RequestContext.RequestID
	h, ok := e.routes[key]
	if !ok {
		return gatewayError("Forbidden", c.id, reqID)
	}
	resp, err := e.invoke(h, req)
	if err != nil {
		e.log.Error("route handler failed", "route", key, "connection_id", c.id, "request_id", reqID, "error", err)
		return gatewayError("Internal server error", c.id, reqID)
	}
	return []byte(resp.Body)
}

// gatewayError is the frame API Gateway itself sends when a message has no
// route or its integration fails.
func gatewayError(message, connectionID, requestID string) []byte {
	b, _ := json.Marshal(struct {
		Message      string `json:"message"`
		ConnectionID string `json:"connectionId"`
		RequestID    string `json:"requestId"`
	}{message, connectionID, requestID})
	return b
}

// invoke calls h as the Lambda runtime would: with a deadline, and with a
// panic turned into an error.
func (e *Emulator) invoke(h Handler, req events.APIGatewayWebsocketProxyRequest) (resp events.APIGatewayProxyResponse, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), integrationTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s handler panicked: %v", req.RequestContext.RouteKey, p)
		}
	}()
	return h(ctx, req)
}

// loseDisconnect draws whether Faults.LoseDisconnect swallows a
// $disconnect.
func (e *Emulator) loseDisconnect() bool {
	return e.endDice != nil && e.endDice.roll() < e.faults.LoseDisconnect
}

// send writes p to c as one text frame within the write timeout. A socket
// that fails or misses the deadline is cut: a frame written in part cannot
// be taken back. A missed deadline wraps context.DeadlineExceeded.
//
// The deadline is one timer per connection, reset for each write, rather
// than a context per write: this is the path of every PostToConnection. A
// write waiting for another one's turn is bounded by that other's
// deadline, after which the socket is cut and it fails at once.
func (e *Emulator) send(c *conn, p []byte) error {
	c.writeMu.Lock()
	if c.writeTimer == nil {
		c.writeTimer = time.AfterFunc(e.writeTimeout, func() { _ = c.ws.CloseNow() })
	} else {
		c.writeTimer.Reset(e.writeTimeout)
	}
	// A context without Done: coder/websocket arms no watchdog of its own.
	err := c.ws.Write(context.Background(), websocket.MessageText, p)
	if !c.writeTimer.Stop() && err != nil {
		err = fmt.Errorf("%w after %v: %w", context.DeadlineExceeded, e.writeTimeout, err)
	}
	c.writeMu.Unlock()
	if err != nil {
		e.remove(c)
		_ = c.ws.CloseNow() // the read loop ends and reports 1006

		return fmt.Errorf("write to %s: %w", c.id, err)
	}
	c.touch()
	return nil
}
