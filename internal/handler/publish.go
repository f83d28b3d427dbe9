package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/fanout"
)

// Executor delivers a message to a topic's subscribers, a user's
// connections or each of many topics; *fanout.Fanout is the
// implementation. The publisher service consumes the same executor
// (publisher.Executor).
type Executor interface {
	Publish(ctx context.Context, m fanout.Message) (fanout.Result, error)
	SendToUser(ctx context.Context, m fanout.UserMessage) (fanout.Result, error)
	Broadcast(ctx context.Context, b fanout.Broadcast) ([]fanout.TopicResult, error)
}

// PublishRequest is the publish Lambda's input: the whole payload of a
// direct invoke, or the body of each SQS message. It names exactly one of
// Topic (a publish), UserID (a send to that user's connections) or Topics
// (a broadcast: one message per topic), as the publisher service's
// Publish, SendToUser and Broadcast do.
type PublishRequest struct {
	Topic      string            `json:"topic,omitempty"`
	UserID     string            `json:"userId,omitempty"`
	Topics     []string          `json:"topics,omitempty"`
	Data       json.RawMessage   `json:"data"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// IdempotencyKey, as the publisher service's idempotency_key (per
	// topic for a broadcast). An SQS record without one is keyed by its SQS
	// message id, so that a record delivered again (SQS delivers at least
	// once) is not published twice. Empty is no key, as on the publisher
	// service.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
}

// PublishResponse answers a direct invoke of a topic publish.
type PublishResponse struct {
	MessageID string `json:"messageId"`
	Delivered int    `json:"delivered"`
	Gone      int    `json:"gone"`
	Failed    int    `json:"failed"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Duplicate bool   `json:"duplicate"`
}

// SendToUserResponse answers a direct invoke of a send to a user: a
// user's message has no position.
type SendToUserResponse struct {
	MessageID string `json:"messageId"`
	Delivered int    `json:"delivered"`
	Gone      int    `json:"gone"`
	Failed    int    `json:"failed"`
	Duplicate bool   `json:"duplicate"`
}

// BroadcastResponse answers a direct invoke of a broadcast: one result
// per topic, in the request's order.
type BroadcastResponse struct {
	Results []BroadcastResult `json:"results"`
}

// BroadcastResult is one topic's publish of a broadcast.
type BroadcastResult struct {
	Topic string `json:"topic"`
	PublishResponse
}

// Publish is the publish Lambda: backends invoke it directly, or through
// an SQS queue, with the same request: a publish to a topic, a send to a
// user or a broadcast.
type Publish struct {
	pub Executor
	log *slog.Logger
}

// NewPublish returns the publish handler over p.
func NewPublish(p Executor, log *slog.Logger) *Publish {
	return &Publish{pub: p, log: log}
}

// Handle accepts a direct invoke, answered with a PublishResponse,
// SendToUserResponse or BroadcastResponse, or an SQS event, answered with
// the records to retry (the event source mapping must
// enable ReportBatchItemFailures).
//
// A record is retried only when it may succeed later (store unavailable,
// deadline, ...). An invalid record (undecodable, or refused with
// fanout.ErrInvalid) is logged and dropped: it would fail on every receive
// and hold its batch hostage until the queue's redrive policy gave up on it.
// Deliveries that failed after the fan-out's own retries are not retried
// either: that would post the message again to every subscriber who got it.
//
// SQS delivers at least once: a record may come again (a visibility timeout
// that ran out, a retried batch). Each record is published with its
// idempotencyKey, or else its SQS message id, so a record seen again within
// store.IdempotencyWindow is answered as a duplicate, not delivered twice.
func (p *Publish) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	// Every field of the probe is absent from a publish request, so its
	// shape alone tells the two inputs apart.
	var probe struct {
		Records []struct {
			EventSource string `json:"eventSource"`
		} `json:"Records"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return nil, fmt.Errorf("%w: payload is neither a publish request nor an SQS event: %v", fanout.ErrInvalid, err)
	}
	if probe.Records == nil {
		return p.publish(ctx, p.log, payload, "")
	}
	for _, r := range probe.Records {
		if r.EventSource != "aws:sqs" {
			return nil, fmt.Errorf("%w: records from %q: only aws:sqs is supported", fanout.ErrInvalid, r.EventSource)
		}
	}
	var ev events.SQSEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("%w: decode SQS event: %v", fanout.ErrInvalid, err)
	}
	return p.batch(ctx, ev), nil
}

// batch publishes each record in order and reports those to retry.
func (p *Publish) batch(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for i, rec := range ev.Records {
		log := p.log.With("sqs_message_id", rec.MessageId)
		_, err := p.publish(ctx, log, []byte(rec.Body), rec.MessageId)
		if err == nil || errors.Is(err, fanout.ErrInvalid) {
			continue // an invalid record was logged by publish
		}
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
		// A FIFO queue promises order: nothing after a record that will be
		// retried may be delivered before it.
		if strings.HasSuffix(rec.EventSourceARN, ".fifo") {
			for _, later := range ev.Records[i+1:] {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: later.MessageId})
			}
			break
		}
	}
	return resp
}

// publish decodes one request and delivers it, keyed by the request's
// idempotency key or else by defaultKey (an SQS message id), and returns
// the direct invoke's answer.
func (p *Publish) publish(ctx context.Context, log *slog.Logger, body []byte, defaultKey string) (any, error) {
	req, err := decodePublish(body)
	if err != nil {
		log.WarnContext(ctx, "publish refused", "err", err)
		return nil, err
	}
	key := req.IdempotencyKey
	if key == "" {
		key = defaultKey
	}
	start := time.Now()
	var resp any
	switch {
	case req.UserID != "":
		log = log.With("user_id", req.UserID)
		var res fanout.Result
		res, err = p.pub.SendToUser(ctx, fanout.UserMessage{UserID: req.UserID, Data: req.Data, Attributes: req.Attributes, IdempotencyKey: key})
		resp = SendToUserResponse{MessageID: res.MessageID, Delivered: res.Delivered, Gone: res.Gone, Failed: res.Failed, Duplicate: res.Duplicate}
		log = log.With("message_id", res.MessageID, "duplicate", res.Duplicate,
			"delivered", res.Delivered, "gone", res.Gone, "failed", res.Failed)
	case req.Topics != nil:
		log = log.With("topics", len(req.Topics))
		var results []fanout.TopicResult
		results, err = p.pub.Broadcast(ctx, fanout.Broadcast{Topics: req.Topics, Data: req.Data, Attributes: req.Attributes, IdempotencyKey: key})
		b := BroadcastResponse{Results: make([]BroadcastResult, len(results))}
		var delivered, gone, failed int
		for i, r := range results {
			b.Results[i] = BroadcastResult{Topic: r.Topic, PublishResponse: publishResponse(r.Result)}
			delivered, gone, failed = delivered+r.Delivered, gone+r.Gone, failed+r.Failed
		}
		resp = b
		log = log.With("delivered", delivered, "gone", gone, "failed", failed)
	default:
		log = log.With("topic", req.Topic)
		var res fanout.Result
		res, err = p.pub.Publish(ctx, fanout.Message{Topic: req.Topic, Data: req.Data, Attributes: req.Attributes, IdempotencyKey: key})
		resp = publishResponse(res)
		log = log.With("message_id", res.MessageID, "offset", res.Position.Offset, "duplicate", res.Duplicate,
			"delivered", res.Delivered, "gone", res.Gone, "failed", res.Failed)
	}
	log = log.With("duration", time.Since(start))
	switch {
	case errors.Is(err, fanout.ErrInvalid):
		log.WarnContext(ctx, "publish refused", "err", err)
	case err != nil:
		log.ErrorContext(ctx, "publish failed", "err", err)
	default:
		log.InfoContext(ctx, "published")
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func publishResponse(res fanout.Result) PublishResponse {
	return PublishResponse{
		MessageID: res.MessageID, Delivered: res.Delivered, Gone: res.Gone, Failed: res.Failed,
		Offset: res.Position.Offset, Epoch: res.Position.Epoch, Duplicate: res.Duplicate,
	}
}

// decodePublish is strict: a misspelt field ("attributs") is an error the
// backend sees, not an attribute silently lost.
func decodePublish(body []byte) (PublishRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req PublishRequest
	if err := dec.Decode(&req); err != nil {
		return PublishRequest{}, fmt.Errorf("%w: decode publish request: %v", fanout.ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return PublishRequest{}, fmt.Errorf("%w: decode publish request: data after the JSON object", fanout.ErrInvalid)
	}
	// Exactly one recipient: a request naming two would be delivered to
	// whichever the code looked at first. A topic that is absent and one
	// given empty are the same (the fan-out refuses the empty name).
	named := 0
	for _, given := range []bool{req.Topic != "", req.UserID != "", req.Topics != nil} {
		if given {
			named++
		}
	}
	if named == 0 {
		return PublishRequest{}, fmt.Errorf(`%w: give "topic" (a publish), "userId" (a send to a user) or "topics" (a broadcast)`, fanout.ErrInvalid)
	}
	if named > 1 {
		return PublishRequest{}, fmt.Errorf(`%w: give one of "topic", "userId" or "topics", not several`, fanout.ErrInvalid)
	}
	return req, nil
}
