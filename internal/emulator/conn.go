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
	"unicode/utf8"

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
	guard      *frameGuard // checks the client's frames; set by the hijack

	// Frames for the client wait in out, oldest first, for the one
	// goroutine that writes them (started by a frame, ended by an empty
	// queue), so that no caller waits on the client. outBytes counts them
	// and the frame being written, within clientBufferBytes.
	outMu     sync.Mutex
	out       [][]byte
	outBytes  int
	writing   bool
	outClosed bool          // the connection is closing: no more frames
	flushed   chan struct{} // closed when the writer stops, if someone waits

	// writeTimer cuts the socket under a write that outlasts the write
	// timeout. Created by the first write; only the writer touches it.
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
	ws, err := websocket.Accept(smallBuffers{w, c}, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
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
// readBufferBytes and writeBufferBytes, a kernel send buffer of
// socketBufferBytes, and the connection's frameGuard under the reader.
type smallBuffers struct {
	http.ResponseWriter
	c *conn
}

func (s smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// What the server read past the handshake (a first frame) stays
	// buffered in the new reader, where Accept looks for it.
	n := brw.Reader.Buffered()
	leftover, _ := brw.Reader.Peek(n)
	if tc, ok := conn.(interface{ SetWriteBuffer(int) error }); ok {
		_ = tc.SetWriteBuffer(socketBufferBytes)
	}
	// Accept reads what the reader holds, then the returned connection
	// itself: both must come through the guard.
	s.c.guard = &frameGuard{r: io.MultiReader(bytes.NewReader(bytes.Clone(leftover)), conn)}
	guarded := guardedConn{conn, s.c.guard}
	br := bufio.NewReaderSize(guarded, max(readBufferBytes, n))
	// net/http may have read the start of a first frame with the request
	// (a client that sends as soon as it sees the 101). If that frame is
	// refused, Peek takes the guard's report: put it back for the read
	// loop, which closes the connection; the handshake itself succeeded.
	if _, err := br.Peek(n); err != nil {
		var fe *frameError
		if !errors.As(err, &fe) {
			conn.Close()
			return nil, nil, err
		}
		s.c.guard.report = fe
	}
	return guarded, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, writeBufferBytes)), nil
}

// guardedConn is a client's socket read through its frameGuard.
type guardedConn struct {
	net.Conn
	guard *frameGuard
}

func (g guardedConn) Read(p []byte) (int, error) { return g.guard.Read(p) }

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
	// The guard refuses larger messages first, in the API's own words.
	c.ws.SetReadLimit(maxMessageBytes)
	// Created idle and armed after the assignment, so that expire always
	// sees c.timer (Reset orders the two for the race detector too).
	c.timer = time.AfterFunc(math.MaxInt64, func() { e.expire(c) })
	c.timer.Reset(min(e.idleTimeout, e.maxDuration))
	defer c.timer.Stop()

	for {
		// A context without Done keeps coder/websocket from arming a
		// watchdog per read; closing the socket is what ends a read.
		typ, body, err := c.ws.Read(context.Background())
		if err != nil {
			if fe := c.guard.refusal(); fe != nil {
				e.log.Info("client frame refused", "connection_id", c.id, "code", int(fe.code), "reason", fe.reason)
				e.closeConn(c, fe.code, fe.reason)
			}
			e.finish(c, disconnectStatus(c, err))
			return
		}
		c.touch()
		if fe := checkMessage(typ, body); fe != nil {
			e.log.Info("client message refused", "connection_id", c.id, "code", int(fe.code), "reason", fe.reason)
			e.closeConn(c, fe.code, fe.reason)
			continue // the read ends with the close handshake
		}
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

// checkMessage refuses what the frame guard cannot see from headers: text
// that is not UTF-8 (RFC 6455, section 8.1). A binary message cannot get
// here past the guard; it is refused all the same.
func checkMessage(typ websocket.MessageType, body []byte) *frameError {
	switch {
	case typ != websocket.MessageText:
		return errBinary
	case !utf8.Valid(body):
		return errInvalidUTF8
	}
	return nil
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
//
// Frames already accepted for the client go out first, as far as the
// client takes them: a post answered 200 is not lost to a close that
// follows it.
func (e *Emulator) closeConn(c *conn, code websocket.StatusCode, reason string) {
	e.remove(c)
	c.flush()
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
	c.discardOut()
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

// errBufferFull is a client whose buffer is full: posts get 429.
var errBufferFull = errors.New("the client's buffer is full")

// errClosing is a connection that takes no more frames: posts get 410.
var errClosing = errors.New("the connection is closing")

// send queues p for c as one text frame and returns at once: like API
// Gateway, the emulator does not make callers wait on a client. It fails
// with errBufferFull when the frames waiting for c (with the one being
// written) would exceed clientBufferBytes; a single frame always fits an
// empty buffer, so any message within the payload limit can be sent.
func (e *Emulator) send(c *conn, p []byte) error {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	switch {
	case c.outClosed:
		return errClosing
	case c.outBytes > 0 && c.outBytes+len(p) > clientBufferBytes:
		return errBufferFull
	}
	c.out = append(c.out, bytes.Clone(p)) // p is the caller's, reused once we return
	c.outBytes += len(p)
	if !c.writing {
		c.writing = true
		go e.drain(c)
	}
	return nil
}

// drain writes c's queued frames, in order, until the queue is empty. A
// write that fails, or outlasts the write timeout because the client has
// stopped reading, cuts the socket: a frame written in part cannot be taken
// back, and a close frame could not get past it. The read loop then ends
// and reports 1006, and later calls get 410.
func (e *Emulator) drain(c *conn) {
	for {
		c.outMu.Lock()
		if len(c.out) == 0 {
			c.stopWriting()
			c.outMu.Unlock()
			return
		}
		p := c.out[0]
		c.out[0] = nil
		c.out = c.out[1:]
		c.outMu.Unlock()

		err := e.write(c, p)

		c.outMu.Lock()
		c.outBytes -= len(p)
		if err != nil {
			e.log.Info("client socket cut: a write failed", "connection_id", c.id, "error", err)
			c.out, c.outBytes, c.outClosed = nil, 0, true
			c.stopWriting()
			c.outMu.Unlock()
			e.remove(c)
			_ = c.ws.CloseNow()
			return
		}
		c.outMu.Unlock()
		c.touch()
	}
}

// stopWriting marks the writer gone and wakes whoever waits for it. The
// caller holds outMu.
func (c *conn) stopWriting() {
	c.writing = false
	if c.flushed != nil {
		close(c.flushed)
		c.flushed = nil
	}
}

// flush stops c taking frames and waits until the writer has written (or
// given up on) those queued. Each write is bounded by the write timeout.
func (c *conn) flush() {
	c.outMu.Lock()
	c.outClosed = true
	if !c.writing {
		c.outMu.Unlock()
		return
	}
	if c.flushed == nil {
		c.flushed = make(chan struct{})
	}
	done := c.flushed
	c.outMu.Unlock()
	<-done
}

// discardOut drops what waits for a connection that has ended.
func (c *conn) discardOut() {
	c.outMu.Lock()
	c.out, c.outClosed = nil, true
	c.outMu.Unlock()
}

// write writes p to c as one text frame within the write timeout; a missed
// deadline wraps context.DeadlineExceeded. Only the writer calls it.
//
// The deadline is one timer per connection, reset for each write, rather
// than a context per write: this is the path of every PostToConnection.
func (e *Emulator) write(c *conn, p []byte) error {
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
	return err
}
