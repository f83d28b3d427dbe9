// Package emulator is a local stand-in for an AWS API Gateway WebSocket API.
//
// It accepts WebSocket connections, calls Lambda handler funcs in-process
// with the events API Gateway would send them, and serves the @connections
// management API on the same listener, so that the same handlers and the
// real apigatewaymanagementapi client work against it unchanged. It keeps
// API Gateway's limits (frame and payload sizes, idle timeout, maximum
// connection duration, account quota) and its quirks: $connect runs before
// the upgrade completes, and $disconnect is best effort (see Drop). Tests can
// add latency and inject the faults AWS shows now and then (see Faults).
// docs/apigateway-fidelity.md lists each behaviour with the test that proves
// it.
//
// Only the devstack and tests use it; product code reaches it over HTTP.
package emulator

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// Handler is a Lambda handler for a WebSocket route, called in-process.
type Handler func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)

// Reserved route keys.
const (
	RouteConnect    = "$connect"
	RouteDisconnect = "$disconnect"
	RouteDefault    = "$default"
)

// API Gateway's limits (its WebSocket quotas page).
const (
	maxFrameBytes   = 32 << 10  // larger client frames close the socket with 1009
	maxMessageBytes = 128 << 10 // so do larger client messages, however framed
	maxPayloadBytes = 128 << 10 // larger management POSTs get 413

	// clientBufferBytes bounds what waits for one client: the frames
	// queued for it and the one being written. A client that stops reading
	// fills it, and from then on posts to it get 429 at once, as AWS
	// answers when a client's buffer is full. AWS publishes no size; this
	// holds eight messages of the largest size.
	clientBufferBytes = 1 << 20
	// socketBufferBytes is the kernel's send buffer of a client socket
	// (which Linux doubles). Left alone, it grows to megabytes, and a
	// client that stops reading would take that much before its buffer
	// counts as full.
	socketBufferBytes = 64 << 10

	defaultIdleTimeout           = 10 * time.Minute
	defaultMaxConnectionDuration = 2 * time.Hour
	defaultWriteTimeout          = 5 * time.Second

	// integrationTimeout is API Gateway's maximum: a handler's context
	// carries this deadline, as a Lambda's would.
	integrationTimeout = 29 * time.Second
)

// Config describes the emulated API.
type Config struct {
	// Routes maps route keys ("$connect", "$disconnect", "$default",
	// "subscribe", ...) to handlers; a nil handler is no route.
	Routes map[string]Handler
	// MockRoutes maps route keys to a fixed reply, like a MOCK integration
	// with a route response: answered without calling any handler.
	MockRoutes map[string]string
	// Stage, when set, serves the API at /{stage} and the management API
	// at /{stage}/@connections/{id}; otherwise both hang off /.
	Stage string
	// APIID is requestContext.apiId in events; "local" when empty.
	APIID string
	// IdleTimeout and MaxConnectionDuration default to AWS's 10 minutes and
	// 2 hours.
	IdleTimeout, MaxConnectionDuration time.Duration
	// WriteTimeout bounds one frame write to a socket (5 s when zero).
	// Posts never wait for it: frames queue for each client, and a full
	// queue answers 429 at once, as AWS does for a full client buffer. A
	// client that takes nothing for this long has its socket cut.
	WriteTimeout time.Duration
	// ManagementLatency delays every management call, as the round trip to
	// AWS would; a caller that gives up meanwhile is not waited for.
	ManagementLatency time.Duration
	// Quota throttles management calls; the zero value is unlimited.
	Quota Quota
	// Faults injects failures; the zero value injects none.
	Faults Faults
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Emulator serves the WebSocket API and its management API; it is an
// http.Handler for a single listener.
type Emulator struct {
	routes       map[string]Handler
	mocks        map[string]string
	stage        string
	prefix       string // "" or "/{stage}"
	apiID        string
	idleTimeout  time.Duration
	maxDuration  time.Duration
	writeTimeout time.Duration
	latency      time.Duration
	quota        *rate.Limiter // nil: unlimited
	faults       Faults
	callDice     *dice // nil: no management call fails on purpose
	endDice      *dice // nil: every $disconnect fires
	log          *slog.Logger

	mu     sync.RWMutex
	conns  map[string]*conn
	closed bool
	live   sync.WaitGroup // one per registered connection, done after its $disconnect
}

// New returns an emulator for cfg. The route maps are copied. It panics on
// a setting that cannot be meant (a fraction above 1, a negative duration):
// that is a mistake in a test's setup, not a condition to handle.
func New(cfg Config) *Emulator {
	if err := cfg.validate(); err != nil {
		panic("emulator: invalid Config: " + err.Error())
	}
	f := cfg.Faults
	e := &Emulator{
		routes:       maps.Clone(cfg.Routes),
		mocks:        maps.Clone(cfg.MockRoutes),
		stage:        strings.Trim(cfg.Stage, "/"),
		apiID:        cmp.Or(cfg.APIID, "local"),
		idleTimeout:  cmp.Or(cfg.IdleTimeout, defaultIdleTimeout),
		maxDuration:  cmp.Or(cfg.MaxConnectionDuration, defaultMaxConnectionDuration),
		writeTimeout: cmp.Or(cfg.WriteTimeout, defaultWriteTimeout),
		latency:      cfg.ManagementLatency,
		quota:        newQuota(cfg.Quota),
		faults:       f,
		callDice:     newDice(f.Throttle+f.ServerError, f.Seed, 1),
		endDice:      newDice(f.LoseDisconnect, f.Seed, 2),
		log:          cmp.Or(cfg.Logger, slog.Default()),
		conns:        make(map[string]*conn),
	}
	maps.DeleteFunc(e.routes, func(_ string, h Handler) bool { return h == nil })
	if e.stage != "" {
		e.prefix = "/" + e.stage
	}
	return e
}

// ServeHTTP upgrades WebSocket requests on / (or /{stage}) and serves the
// management API on /@connections/{id} (or /{stage}/@connections/{id}).
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// URL.Path is unescaped, so an id the SDK sent as "abc%3D" reads
	// "abc=", and .NET's "%40connections" reads "@connections".
	rest, staged := strings.CutPrefix(r.URL.Path, e.prefix)
	if staged && (rest == "" || rest == "/") {
		e.upgrade(w, r)
		return
	}
	// Like API Gateway, everything else is a call to the IAM-protected
	// management API, wrong paths included.
	e.manage(w, r, rest, staged)
}

// Stats is a snapshot of the emulator's state.
type Stats struct {
	// Connections counts the connections $connect accepted that have not
	// ended yet.
	Connections int
}

// Stats returns the emulator's current state; it is cheap enough to poll.
func (e *Emulator) Stats() Stats {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return Stats{Connections: len(e.conns)}
}

// ConnectionIDs returns the ids of the open connections, sorted.
func (e *Emulator) ConnectionIDs() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Sorted(maps.Keys(e.conns))
}

// Drop makes a connection vanish without $disconnect, as happens on AWS
// where $disconnect is best effort: the socket is cut without a close frame
// and later management calls get 410. It reports whether id was open.
func (e *Emulator) Drop(id string) bool {
	c := e.lookup(id)
	if c == nil {
		return false
	}
	c.dropped.Store(true)
	e.remove(c)
	_ = c.ws.CloseNow()
	return true
}

// Close closes every connection with 1001 Going Away, waits for their
// $disconnect handlers, and refuses new connections from then on.
func (e *Emulator) Close() {
	e.mu.Lock()
	e.closed = true
	conns := slices.Collect(maps.Values(e.conns))
	e.mu.Unlock()

	for _, c := range conns {
		// Each close waits for its peer's close frame: in parallel, so
		// shutdown takes one round trip (or one timeout), not one per socket.
		go func() {
			if c.accepted() {
				e.closeConn(c, websocket.StatusGoingAway, "Going away")
			}
		}()
	}
	e.live.Wait()
}

// register makes c visible to the management API; false after Close.
func (e *Emulator) register(c *conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.conns[c.id] = c
	e.live.Add(1)
	return true
}

// remove unregisters c, after which management calls for it get 410.
func (e *Emulator) remove(c *conn) {
	e.mu.Lock()
	if e.conns[c.id] == c {
		delete(e.conns, c.id)
	}
	e.mu.Unlock()
}

// lookup returns the open connection id, or nil. A connection still in its
// handshake is waited for, so a client that has just connected can be
// posted to at once.
func (e *Emulator) lookup(id string) *conn {
	e.mu.RLock()
	c := e.conns[id]
	e.mu.RUnlock()
	if c == nil || !c.accepted() {
		return nil
	}
	return c
}
