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

// Executor publishes one message to every subscriber of its topic;
// *fanout.Fanout is the implementation. The publisher service consumes the
// same interface under the same name (publisher.Executor).
type Executor interface {
	Publish(ctx context.Context, m fanout.Message) (fanout.Result, error)
}

// PublishRequest is the publish Lambda's input: the whole payload of a
// direct invoke, or the body of each SQS message.
type PublishRequest struct {
	Topic      string            `json:"topic"`
	Data       json.RawMessage   `json:"data"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// IdempotencyKey, as the publisher service's idempotency_key. An SQS
	// record without one is keyed by its SQS message id, so that a record
	// delivered again (SQS delivers at least once) is not published twice.
	// Empty is no key, as on the publisher service.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
}

// PublishResponse answers a direct invoke.
type PublishResponse struct {
	MessageID string `json:"messageId"`
	Delivered int    `json:"delivered"`
	Gone      int    `json:"gone"`
	Failed    int    `json:"failed"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Duplicate bool   `json:"duplicate"`
}

// Publish is the publish Lambda: backends invoke it
// directly, or through an SQS queue, with the same request.
type Publish struct {
	pub Executor
	log *slog.Logger
}

// NewPublish returns the publish handler over p.
func NewPublish(p Executor, log *slog.Logger) *Publish {
	return &Publish{pub: p, log: log}
}

// Handle accepts a direct invoke, answered with a PublishResponse, or an SQS
// event, answered with the records to retry (the event source mapping must
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
		res, err := p.publish(ctx, p.log, payload, "")
		if err != nil {
			return nil, err
		}
		return PublishResponse{
			MessageID: res.MessageID, Delivered: res.Delivered, Gone: res.Gone, Failed: res.Failed,
			Offset: res.Position.Offset, Epoch: res.Position.Epoch, Duplicate: res.Duplicate,
		}, nil
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

// publish decodes one publish request and fans it out, keyed by the
// request's idempotency key or else by defaultKey (an SQS message id).
func (p *Publish) publish(ctx context.Context, log *slog.Logger, body []byte, defaultKey string) (fanout.Result, error) {
	req, err := decodePublish(body)
	if err != nil {
		log.WarnContext(ctx, "publish refused", "err", err)
		return fanout.Result{}, err
	}
	key := req.IdempotencyKey
	if key == "" {
		key = defaultKey
	}
	start := time.Now()
	res, err := p.pub.Publish(ctx, fanout.Message{Topic: req.Topic, Data: req.Data, Attributes: req.Attributes, IdempotencyKey: key})
	log = log.With("topic", req.Topic, "duration", time.Since(start))
	switch {
	case errors.Is(err, fanout.ErrInvalid):
		log.WarnContext(ctx, "publish refused", "err", err)
	case err != nil:
		log.ErrorContext(ctx, "publish failed", "err", err)
	default:
		log.InfoContext(ctx, "published", "message_id", res.MessageID, "offset", res.Position.Offset, "duplicate", res.Duplicate,
			"delivered", res.Delivered, "gone", res.Gone, "failed", res.Failed)
	}
	return res, err
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
	return req, nil
}
