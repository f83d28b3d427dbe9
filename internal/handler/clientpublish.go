package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// TopicPublisher publishes one message to a topic's subscribers: the
// executor a backend's publish goes through (*fanout.Fanout), so that a
// client's message takes the same validation, position, history, pacing,
// retries and cleanup.
type TopicPublisher interface {
	Publish(ctx context.Context, m fanout.Message) (fanout.Result, error)
}

// ClientPublish answers the publish route: a browser publishing to a
// topic over its WebSocket.
//
// The 29-second limit: API Gateway gives a route's integration 29 s to
// answer. The route publishes under the deadline every route call has
// (CALL_TIMEOUT, less DeadlineMargin before the function's own timeout),
// both well inside it. The message takes its position and is retained
// before any post (fanout.Publish), so when a large fan-out outlasts that
// deadline, posting stops, the sender is still answered "published", and
// a subscriber the fan-out did not reach in time sees a gap in offsets at
// its next message of the topic and recovers the missed one from history
// (subscribe with "recover", which the browser client does on a gap).
// Nothing is posted after the answer: no goroutine outlives the call.
type ClientPublish struct {
	routes *Routes
	pub    TopicPublisher
	rates  store.RateLimiter
	limit  store.RateLimit
}

// NewClientPublish returns the publish route over the connections routes
// keep (their grants, log and call deadline), publishing through pub, and
// limiting each connection to limit in rates.
func NewClientPublish(routes *Routes, pub TopicPublisher, rates store.RateLimiter, limit store.RateLimit) *ClientPublish {
	return &ClientPublish{routes: routes, pub: pub, rates: rates, limit: limit}
}

// Handle publishes the frame's message, or answers why not. Every refusal
// (a malformed frame, a message the executor would refuse, a topic outside
// the connection's publish grant, a connection over its rate) comes before
// anything is stored or posted, and in that order: a message that cannot
// be published does not spend the connection's rate, and a refused
// connection writes no rate bucket. The connection stays open: the answer
// is an error frame, never a Lambda error.
func (c *ClientPublish) Handle(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	id := req.RequestContext.ConnectionID
	if id == "" {
		return status(http.StatusBadRequest), errNoConnectionID
	}
	ctx, cancel := c.routes.withDeadline(ctx)
	defer cancel()
	log := c.routes.Log.With("route", wsproto.ActionPublish, "connection_id", id)
	p, err := wsproto.ParsePublish([]byte(req.Body))
	var frame []byte
	if err == nil {
		frame, err = c.publish(ctx, log, id, p)
	}
	if err != nil {
		frame = withRef(errorFrame(ctx, log, err), p.Ref)
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: string(frame)}, nil
}

func (c *ClientPublish) publish(ctx context.Context, log *slog.Logger, id string, p wsproto.PublishRequest) ([]byte, error) {
	log = log.With("topic", p.Topic)
	if p.Ref != "" {
		log = log.With("ref", p.Ref)
	}
	m := fanout.Message{Topic: p.Topic, Data: p.Data, Attributes: p.Attributes}
	if err := fanout.Check(m); err != nil {
		return nil, invalid(err)
	}
	conn, err := c.routes.Store.GetConnection(ctx, id)
	if err != nil {
		return nil, err
	}
	if !allowed(conn.PublishTopics, p.Topic) {
		return nil, &wsproto.FrameError{Code: wsproto.CodeForbidden, Message: fmt.Sprintf("this connection may not publish to %q", p.Topic)}
	}
	ok, err := c.rates.TakeToken(ctx, id, c.limit)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &wsproto.FrameError{Code: wsproto.CodeRateLimited, Message: fmt.Sprintf(
			"this connection publishes faster than %v messages per second (bursts of %d): try again shortly", c.limit.Rate, c.limit.Burst)}
	}
	res, err := c.pub.Publish(ctx, m)
	if errors.Is(err, fanout.ErrInvalid) {
		return nil, invalid(err)
	}
	if err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "published", "message_id", res.MessageID, "offset", res.Position.Offset,
		"delivered", res.Delivered, "gone", res.Gone, "failed", res.Failed)
	return wsproto.Published(p.Topic, res.MessageID, wsproto.Position{Epoch: res.Position.Epoch, Offset: res.Position.Offset}, p.Ref), nil
}

// invalid is the executor's refusal, told to the client as bad_request
// with its detail: the topic was judged before, so what is left is the
// message's content (its data, attributes or size).
func invalid(err error) error {
	return &wsproto.FrameError{Code: wsproto.CodeBadRequest, Message: err.Error()}
}

// withRef echoes the frame's ref on an error frame, so that a client with
// several publishes in flight knows which one it answers.
func withRef(frame []byte, ref string) []byte {
	if ref == "" {
		return frame
	}
	var e wsproto.ErrorFrame
	if json.Unmarshal(frame, &e) != nil {
		return frame
	}
	return wsproto.ErrorWithRef(e.Code, e.Message, ref)
}
