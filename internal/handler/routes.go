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
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	smithytime "github.com/aws/smithy-go/time"
	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Connections is the part of store.Store the WebSocket routes use.
type Connections interface {
	PutConnection(ctx context.Context, c store.Connection) error
	GetConnection(ctx context.Context, connectionID string) (store.Connection, error)
	DeleteConnection(ctx context.Context, connectionID string) error
	Subscribe(ctx context.Context, connectionID, userID string, topics []string) error
	Unsubscribe(ctx context.Context, connectionID string, topics []string) error
	Topics(ctx context.Context, connectionID string) ([]string, error)
	// Positions and History let a subscribe tell the client where each
	// topic stands and replay what a recovering client missed.
	Positions(ctx context.Context, topics []string, keep time.Duration) (map[string]store.Position, error)
	History(ctx context.Context, topic string, since uint64, limit int) ([]store.Retained, store.Position, error)
}

// Poster posts one frame to one connection through API Gateway's
// management API: a recovering subscribe replays missed messages with it.
// The fan-out's poster (the management API client, timed by the metrics)
// satisfies it.
type Poster interface {
	PostToConnection(ctx context.Context, connectionID string, data []byte) error
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
	// Publish are the topics the connection may publish to, as Topics;
	// nil grants every topic.
	Publish []string
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
	// Poster replays the messages a recovering subscribe missed; nil
	// recovers only a client that missed nothing.
	Poster Poster
	// HistoryTTL (HISTORY_TTL) is how long published messages are kept:
	// 0 keeps none, so only a client that missed nothing recovers. It
	// also keeps the topics' positions at least that long.
	HistoryTTL time.Duration
	// RecoveryMaxMessages (RECOVERY_MAX_MESSAGES) is the most messages
	// one topic's recovery replays; a client that missed more resyncs.
	RecoveryMaxMessages int
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

// Connect records the connection, with the grant's subject as its user. A
// store failure refuses the connection
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
		// The subject becomes the connection's user: the publisher finds
		// it by this id, so one the store could not key, or the publisher
		// could not be asked for, is refused here like a bad token. The
		// error names no part of the subject: it came from the token.
		if err := store.ValidateUserID(g.Subject); err != nil {
			log.InfoContext(ctx, "connection refused: the token's sub is not a valid user id", "err", err)
			return status(http.StatusUnauthorized), nil
		}
		c.Subject, c.AllowedTopics, c.PublishTopics = g.Subject, g.Topics, g.Publish
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

// Subscribe records the frame's topics and patterns for the connection,
// all or none: one the connection may not have refuses the whole frame.
// The answer carries each topic's latest position (a pattern has none)
// and, for a frame with "recover", whether the client's missed messages
// reach it (recovered; always false for a pattern).
//
// The subscription is stored first, and the positions and history read
// after: a message published in between is delivered live, replayed, or
// both (the client dedupes by topic and offset), but never neither.
func (r *Routes) Subscribe(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	return r.answer(ctx, req, wsproto.ActionSubscribe, func(ctx context.Context, log *slog.Logger, id string, body []byte) ([]byte, error) {
		sub, err := wsproto.ParseSubscribe(body)
		if err != nil {
			return nil, err
		}
		topics := sub.Topics
		c, err := r.Store.GetConnection(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, t := range topics {
			if !allowed(c.AllowedTopics, t) {
				return nil, forbidden(t)
			}
		}
		if err := r.checkSubscriptionLimit(ctx, id, topics); err != nil {
			return nil, err
		}
		// Each subscription carries the connection's user, so that a
		// topic's distinct users are counted from its subscriptions alone.
		if err := r.Store.Subscribe(ctx, id, c.Subject, topics); err != nil {
			return nil, err
		}
		// Only topics have positions: a pattern is never published to, and
		// the topics it matches each have their own, which their messages
		// carry.
		streams := slices.DeleteFunc(slices.Clone(topics), wsproto.IsPattern)
		positions := make(map[string]wsproto.Position, len(streams))
		var latest map[string]store.Position
		if len(streams) > 0 {
			// The counters outlive the history they number, so that
			// History never holds offsets of an epoch the counter has
			// forgotten.
			if latest, err = r.Store.Positions(ctx, streams, max(store.PositionKeep, r.HistoryTTL)); err != nil {
				return nil, err
			}
		}
		for _, t := range streams {
			p, ok := latest[t]
			if !ok {
				return nil, fmt.Errorf("store answered no position for topic %q", t)
			}
			positions[t] = wsproto.Position{Epoch: p.Epoch, Offset: p.Offset}
		}
		var recovered map[string]bool
		if sub.Recover != nil {
			if recovered, err = r.recover(ctx, log, id, sub.Recover, positions); err != nil {
				return nil, err
			}
		}
		log.InfoContext(ctx, "subscribed", "topics", len(topics), "recover", len(sub.Recover), "recovered", countTrue(recovered))
		return wsproto.Subscribed(topics, positions, recovered), nil
	})
}

// forbidden refuses a subscription the connection's grant does not cover.
func forbidden(name string) *wsproto.FrameError {
	if wsproto.IsPattern(name) {
		return &wsproto.FrameError{Code: wsproto.CodeForbidden, Message: fmt.Sprintf(
			"this connection may not subscribe to pattern %q: that needs a grant covering every topic it matches (\"*\", or a prefix grant the pattern starts with)", name)}
	}
	return &wsproto.FrameError{Code: wsproto.CodeForbidden, Message: fmt.Sprintf("this connection may not subscribe to %q", name)}
}

// recoverConcurrency bounds the topics one subscribe recovers at once: each
// holds up to RecoveryMaxMessages envelopes while it replays them.
const recoverConcurrency = 4

// recover answers, for each topic of from, whether every message after the
// client's position reaches the connection, replaying them if so. A store
// failure fails the whole answer (the client retries the subscribe, which
// is harmless: the subscription is kept and replays are deduped); a replay
// that cannot be posted answers false for its topic.
func (r *Routes) recover(ctx context.Context, log *slog.Logger, id string, from, latest map[string]wsproto.Position) (map[string]bool, error) {
	out := make(map[string]bool, len(from))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(recoverConcurrency)
	for _, topic := range slices.Sorted(maps.Keys(from)) {
		if wsproto.IsPattern(topic) {
			// A pattern has no stream to replay: its topics' positions
			// are theirs, which the client may recover by topic.
			out[topic] = false
			continue
		}
		g.Go(func() error {
			ok, err := r.recoverTopic(gctx, log.With("topic", topic), id, topic, from[topic], latest[topic])
			if err != nil {
				return err
			}
			mu.Lock()
			out[topic] = ok
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// historyRereads and historyReread bound the re-reads of a history with a
// hole: a publish takes its position before it retains its message, so a
// hole may be a publish still retaining, which will fill it in moments (that
// publish reads its subscribers after, so it also reaches this connection
// live). A hole that stays is a publish that failed to retain: recovery
// answers false.
const (
	historyRereads = 2
	historyReread  = 50 * time.Millisecond
)

func (r *Routes) recoverTopic(ctx context.Context, log *slog.Logger, id, topic string, from, latest wsproto.Position) (bool, error) {
	switch {
	case from.Epoch != latest.Epoch:
		return false, nil // the client's offsets mean nothing in this epoch
	case from.Offset == latest.Offset:
		return true, nil // nothing missed: nothing to replay
	case from.Offset > latest.Offset:
		return false, nil // a position this epoch never reached
	case r.HistoryTTL <= 0, r.Poster == nil:
		return false, nil // nothing kept, or no way to replay it
	case latest.Offset-from.Offset > uint64(max(r.RecoveryMaxMessages, 0)):
		return false, nil // more missed than one recovery replays
	}
	n := int(latest.Offset - from.Offset)
	var missed []store.Retained
	for attempt := 0; ; attempt++ {
		msgs, now, err := r.Store.History(ctx, topic, from.Offset, n)
		if err != nil {
			return false, err
		}
		if now.Epoch != latest.Epoch {
			return false, nil // the epoch ended since the positions were read
		}
		if contiguous(msgs, from.Offset, n) {
			missed = msgs
			break
		}
		if attempt == historyRereads {
			log.InfoContext(ctx, "recovery refused: a missed message is not retained (expired, or its publish failed)", "since", from.Offset, "latest", latest.Offset, "retained", len(msgs))
			return false, nil
		}
		if err := smithytime.SleepWithContext(ctx, historyReread<<attempt); err != nil {
			return false, err
		}
	}
	for _, m := range missed {
		if err := r.replay(ctx, id, m.Envelope); err != nil {
			log.WarnContext(ctx, "replay failed: the client must resync", "offset", m.Offset, "err", err)
			return false, nil
		}
	}
	return true, nil
}

// contiguous reports whether msgs are exactly the n offsets after since.
func contiguous(msgs []store.Retained, since uint64, n int) bool {
	if len(msgs) != n {
		return false
	}
	for i, m := range msgs {
		if m.Offset != since+1+uint64(i) {
			return false
		}
	}
	return true
}

// replayAttempts and replayBackoff retry a replay post that the management
// API throttled or failed transiently, as the fan-out retries its posts:
// one lost post would make the whole topic's recovery answer false.
const (
	replayAttempts = 4
	replayBackoff  = 50 * time.Millisecond
)

func (r *Routes) replay(ctx context.Context, id string, envelope []byte) error {
	for attempt := 1; ; attempt++ {
		err := r.Poster.PostToConnection(ctx, id, envelope)
		if err == nil || attempt == replayAttempts ||
			!(errors.Is(err, apigw.ErrThrottled) || errors.Is(err, apigw.ErrServer) || errors.Is(err, apigw.ErrUnreachable)) {
			return err
		}
		if err := smithytime.SleepWithContext(ctx, replayBackoff<<(attempt-1)); err != nil {
			return err
		}
	}
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, ok := range m {
		if ok {
			n++
		}
	}
	return n
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

// Unsubscribe forgets the frame's topics and patterns for the connection.
// It needs no grant check: dropping interest is always allowed.
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
		const want = "want subscribe, unsubscribe, publish or ping"
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
