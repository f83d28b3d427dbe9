// Package handler holds wsgateway's Lambda handlers: plain functions on
// aws-lambda-go's typed events, so the Lambdas, the devstack's emulated API
// Gateway and the tests all run the same code, none of them needing AWS.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Connections is the part of store.Store the WebSocket routes use.
type Connections interface {
	PutConnection(ctx context.Context, c store.Connection) error
	GetConnection(ctx context.Context, connectionID string) (store.Connection, error)
	DeleteConnection(ctx context.Context, connectionID string) error
	Subscribe(ctx context.Context, connectionID string, topics []string) error
	Unsubscribe(ctx context.Context, connectionID string, topics []string) error
	Topics(ctx context.Context, connectionID string) ([]string, error)
}

// DefaultMaxSubscriptions bounds one connection's subscriptions, so that a
// single browser cannot make every publish of many topics reach it, nor
// grow its disconnect cleanup without end.
const DefaultMaxSubscriptions = 100

// Grant is what a $connect request proved it may do.
type Grant struct {
	Subject string
	// Topics are topic names and "prefix*" patterns (see allowed); nil
	// grants every topic.
	Topics []string
}

// Routes answers API Gateway's WebSocket routes. Frames the client got wrong
// and store outages are answered with an error frame (status 200, so API
// Gateway relays it), never with a Lambda error: the client can act on the
// frame, it could not act on an opaque "Internal server error".
type Routes struct {
	Store Connections
	Log   *slog.Logger
	// Now stamps connections whose event carries no connectedAt.
	Now func() time.Time
	// Authenticate, when set, vets every $connect: an error refuses the
	// connection with 401, a Grant is recorded with the connection and
	// bounds what it may subscribe to. nil admits every connection to any
	// topic (connect auth off). Errors are logged: they must not quote
	// the token.
	Authenticate func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (Grant, error)
	// MaxSubscriptions per connection (MAX_SUBSCRIPTIONS_PER_CONNECTION).
	// It is a soft bound: two subscribe frames of one connection handled
	// at the same moment may pass it together.
	MaxSubscriptions int
	// CallTimeout bounds each route call (CALL_TIMEOUT), so that a stalled
	// store yields an error the client can act on, not a call that hangs
	// until API Gateway gives up on it. An earlier deadline of the incoming
	// context (on AWS, the function's own), less DeadlineMargin, still
	// wins. Zero or less means DefaultCallTimeout.
	CallTimeout time.Duration
}

// DefaultCallTimeout is CALL_TIMEOUT's default.
const DefaultCallTimeout = 10 * time.Second

// NewRoutes returns the routes over s, logging to log.
func NewRoutes(s Connections, log *slog.Logger) *Routes {
	return &Routes{Store: s, Log: log, Now: time.Now, MaxSubscriptions: DefaultMaxSubscriptions, CallTimeout: DefaultCallTimeout}
}

// DeadlineMargin is how long before the incoming deadline (on AWS, the
// function's timeout) a route call gives up, so that it still has time to
// answer its error frame or status. Without it, CALL_TIMEOUT and the
// function's timeout, both 10 s by default, would end together, and Lambda
// would kill a function waiting on a stalled store before it could answer.
const DeadlineMargin = time.Second

// withDeadline bounds one route call by CallTimeout, and by the incoming
// deadline less a margin: DeadlineMargin, or half the time left when that
// is shorter, so that a call arriving close to its deadline still gets
// some of it.
func (r *Routes) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	d := r.CallTimeout
	if d <= 0 {
		d = DefaultCallTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		d = min(d, left-min(DeadlineMargin, left/2))
	}
	return context.WithTimeout(ctx, d)
}

// errNoConnectionID means the event did not come from API Gateway's
// WebSocket API, which always names the connection.
var errNoConnectionID = errors.New("event has no requestContext.connectionId")

// Connect records the connection. A store failure refuses the connection
// (500): admitting a connection that no publish can find would fail
// silently, while a refused client simply reconnects.
func (r *Routes) Connect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rc := req.RequestContext
	if rc.ConnectionID == "" {
		return status(http.StatusBadRequest), errNoConnectionID
	}
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	log := r.Log.With("route", "$connect", "connection_id", rc.ConnectionID)
	c := store.Connection{
		ID:          rc.ConnectionID,
		ConnectedAt: time.UnixMilli(rc.ConnectedAt),
		SourceIP:    rc.Identity.SourceIP,
		UserAgent:   rc.Identity.UserAgent,
	}
	if rc.ConnectedAt == 0 {
		c.ConnectedAt = r.Now()
	}
	if r.Authenticate != nil {
		g, err := r.Authenticate(ctx, req)
		if err != nil {
			log.InfoContext(ctx, "connection refused", "err", err)
			return status(http.StatusUnauthorized), nil
		}
		c.Subject, c.AllowedTopics = g.Subject, g.Topics
	}
	if err := r.Store.PutConnection(ctx, c); err != nil {
		log.ErrorContext(ctx, "record connection", "err", err)
		return status(http.StatusInternalServerError), nil
	}
	log.InfoContext(ctx, "connected", "subject", c.Subject)
	return status(http.StatusOK), nil
}

// Disconnect forgets the connection and its subscriptions. Its error is
// returned so that it shows as a failed invocation; the items' TTL cleans up
// whatever a failed or lost $disconnect leaves behind.
func (r *Routes) Disconnect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rc := req.RequestContext
	if rc.ConnectionID == "" {
		return status(http.StatusBadRequest), errNoConnectionID
	}
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	log := r.Log.With("route", "$disconnect", "connection_id", rc.ConnectionID)
	if err := r.Store.DeleteConnection(ctx, rc.ConnectionID); err != nil {
		log.ErrorContext(ctx, "forget connection", "err", err)
		return status(http.StatusInternalServerError), fmt.Errorf("disconnect %s: %w", rc.ConnectionID, err)
	}
	log.InfoContext(ctx, "disconnected", "close_code", rc.DisconnectStatusCode)
	return status(http.StatusOK), nil
}

// Subscribe records the frame's topics for the connection, all or none:
// one topic the connection may not have refuses the whole frame.
func (r *Routes) Subscribe(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	return r.answer(ctx, req, wsproto.ActionSubscribe, func(ctx context.Context, log *slog.Logger, id string, body []byte) ([]byte, error) {
		topics, err := wsproto.ParseTopics(body)
		if err != nil {
			return nil, err
		}
		c, err := r.Store.GetConnection(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, t := range topics {
			if !allowed(c.AllowedTopics, t) {
				return nil, &wsproto.FrameError{Code: wsproto.CodeForbidden, Message: fmt.Sprintf("this connection may not subscribe to %q", t)}
			}
		}
		if err := r.checkSubscriptionLimit(ctx, id, topics); err != nil {
			return nil, err
		}
		if err := r.Store.Subscribe(ctx, id, topics); err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "subscribed", "topics", len(topics))
		return wsproto.Subscribed(topics), nil
	})
}

// checkSubscriptionLimit refuses a subscribe that would take the connection
// past MaxSubscriptions; topics it already has do not count twice.
func (r *Routes) checkSubscriptionLimit(ctx context.Context, id string, topics []string) error {
	if r.MaxSubscriptions <= 0 {
		return nil
	}
	have, err := r.Store.Topics(ctx, id)
	if err != nil {
		return err
	}
	total := len(have)
	for _, t := range topics {
		if !slices.Contains(have, t) {
			total++
		}
	}
	if total > r.MaxSubscriptions {
		return &wsproto.FrameError{Code: wsproto.CodeLimitExceeded, Message: fmt.Sprintf(
			"a connection may hold at most %d subscriptions; it has %d and this frame adds %d", r.MaxSubscriptions, len(have), total-len(have))}
	}
	return nil
}

// Unsubscribe forgets the frame's topics for the connection. It needs no
// grant check: dropping interest is always allowed.
func (r *Routes) Unsubscribe(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	return r.answer(ctx, req, wsproto.ActionUnsubscribe, func(ctx context.Context, log *slog.Logger, id string, body []byte) ([]byte, error) {
		topics, err := wsproto.ParseTopics(body)
		if err != nil {
			return nil, err
		}
		if err := r.Store.Unsubscribe(ctx, id, topics); err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "unsubscribed", "topics", len(topics))
		return wsproto.Unsubscribed(topics), nil
	})
}

// Default answers frames no route matched. ping normally never gets here
// (API Gateway answers it with a mock integration), but answering it keeps
// keep-alives working where that route is not deployed.
func (r *Routes) Default(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	return r.answer(ctx, req, "$default", func(_ context.Context, _ *slog.Logger, _ string, body []byte) ([]byte, error) {
		if !json.Valid(body) {
			return nil, &wsproto.FrameError{Code: wsproto.CodeBadRequest, Message: "frame is not valid JSON"}
		}
		var frame struct {
			Action string `json:"action"`
		}
		if json.Unmarshal(body, &frame) != nil {
			return nil, &wsproto.FrameError{Code: wsproto.CodeBadRequest, Message: `frame must be a JSON object with a string "action"`}
		}
		const want = "want subscribe, unsubscribe or ping"
		switch frame.Action {
		case wsproto.ActionPing:
			return wsproto.PongFrame(), nil
		case "":
			return nil, &wsproto.FrameError{Code: wsproto.CodeUnknownAction, Message: `frame has no "action": ` + want}
		default:
			return nil, &wsproto.FrameError{Code: wsproto.CodeUnknownAction, Message: fmt.Sprintf("unknown action %q: %s", wsproto.Clip(frame.Action, 40), want)}
		}
	})
}

// answer runs a MESSAGE route under the call's deadline and turns its
// outcome into the frame the client receives.
func (r *Routes) answer(ctx context.Context, req events.APIGatewayWebsocketProxyRequest, route string,
	do func(ctx context.Context, log *slog.Logger, connectionID string, body []byte) ([]byte, error),
) (events.APIGatewayProxyResponse, error) {
	id := req.RequestContext.ConnectionID
	if id == "" {
		return status(http.StatusBadRequest), errNoConnectionID
	}
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	log := r.Log.With("route", route, "connection_id", id)
	frame, err := do(ctx, log, id, []byte(req.Body))
	if err != nil {
		frame = errorFrame(ctx, log, err)
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: string(frame)}, nil
}

// errorFrame tells the client what went wrong, in terms it can act on;
// the detail of a server-side failure stays in the log.
func errorFrame(ctx context.Context, log *slog.Logger, err error) []byte {
	var fe *wsproto.FrameError
	switch {
	case errors.As(err, &fe):
		log.InfoContext(ctx, "frame refused", "code", fe.Code)
		return wsproto.Error(fe.Code, fe.Message)
	case errors.Is(err, store.ErrNotFound):
		log.WarnContext(ctx, "frame from an unrecorded connection", "err", err)
		return wsproto.Error(wsproto.CodeBadRequest, "this connection is not registered: reconnect")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		// A store that did not answer within the call's deadline is, to
		// the client, one that is down: it may try again.
		log.ErrorContext(ctx, "store unavailable", "err", err)
		return wsproto.Error(wsproto.CodeUnavailable, "temporarily unavailable: try again shortly")
	default:
		log.ErrorContext(ctx, "route failed", "err", err)
		return wsproto.Error(wsproto.CodeInternal, "internal error")
	}
}

func status(code int) events.APIGatewayProxyResponse {
	return events.APIGatewayProxyResponse{StatusCode: code}
}
