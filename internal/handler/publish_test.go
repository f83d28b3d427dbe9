package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// fakeFanout refuses what the fan-out refuses (invalid topics), fails topics
// starting with "down" as a store outage does, and records every message.
type fakeFanout struct {
	mu        sync.Mutex
	published []fanout.Message
}

func (f *fakeFanout) Publish(_ context.Context, m fanout.Message) (fanout.Result, error) {
	f.mu.Lock()
	f.published = append(f.published, m)
	f.mu.Unlock()
	if err := wsproto.ValidateTopic(m.Topic); err != nil {
		return fanout.Result{}, fmt.Errorf("%w: %v", fanout.ErrInvalid, err)
	}
	if strings.HasPrefix(m.Topic, "down") {
		return fanout.Result{}, fmt.Errorf("query subscribers: %w", store.ErrUnavailable)
	}
	return fanout.Result{MessageID: "id-" + m.Topic, Position: store.Position{Epoch: "ep", Offset: 7}, Delivered: 2, Gone: 1}, nil
}

// SendToUser refuses what the fan-out refuses (a bad user id), fails users
// starting with "down", and records the send as a publish to "@<user>".
func (f *fakeFanout) SendToUser(_ context.Context, m fanout.UserMessage) (fanout.Result, error) {
	f.mu.Lock()
	f.published = append(f.published, fanout.Message{Topic: "@" + m.UserID, Data: m.Data, Attributes: m.Attributes, IdempotencyKey: m.IdempotencyKey})
	f.mu.Unlock()
	if err := store.ValidateUserID(m.UserID); err != nil {
		return fanout.Result{}, fmt.Errorf("%w: %v", fanout.ErrInvalid, err)
	}
	if strings.HasPrefix(m.UserID, "down") {
		return fanout.Result{}, fmt.Errorf("query connections: %w", store.ErrUnavailable)
	}
	return fanout.Result{MessageID: "id-@" + m.UserID, Delivered: 3}, nil
}

// Broadcast refuses the whole broadcast if a topic is invalid, as the
// fan-out does, else publishes to each topic and returns the first error.
func (f *fakeFanout) Broadcast(ctx context.Context, b fanout.Broadcast) ([]fanout.TopicResult, error) {
	if len(b.Topics) == 0 {
		return nil, fmt.Errorf("%w: no topic", fanout.ErrInvalid)
	}
	for _, t := range b.Topics {
		if err := wsproto.ValidateTopic(t); err != nil {
			return nil, fmt.Errorf("%w: %v", fanout.ErrInvalid, err)
		}
	}
	var results []fanout.TopicResult
	var first error
	for _, t := range b.Topics {
		res, err := f.Publish(ctx, fanout.Message{Topic: t, Data: b.Data, Attributes: b.Attributes, IdempotencyKey: b.IdempotencyKey})
		results = append(results, fanout.TopicResult{Topic: t, Result: res, Err: err})
		if first == nil {
			first = err
		}
	}
	return results, first
}

func (f *fakeFanout) topics() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.published {
		out = append(out, m.Topic)
	}
	return out
}

type sqsRecord struct{ id, body string }

// sqsEvent builds an event as Lambda's SQS event source mapping delivers it
// (aws-lambda-go's events/testdata/sqs-event.json).
func sqsEvent(t *testing.T, queueARN string, records ...sqsRecord) json.RawMessage {
	t.Helper()
	var rs []string
	for _, r := range records {
		body, _ := json.Marshal(r.body)
		rs = append(rs, fmt.Sprintf(`{
      "messageId": %q,
      "receiptHandle": "MessageReceiptHandle",
      "body": %s,
      "md5OfBody": "fce0ea8dd236ccb3ed9b37dae260836f",
      "eventSourceARN": %q,
      "eventSource": "aws:sqs",
      "awsRegion": "us-west-2",
      "attributes": {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1520621625029",
        "SenderId": "AROAIWPX5BD2BHG722MW4:sender",
        "ApproximateFirstReceiveTimestamp": "1520621634884"
      },
      "messageAttributes": {}
    }`, r.id, body, queueARN))
	}
	return json.RawMessage(`{"Records": [` + strings.Join(rs, ",") + `]}`)
}

const (
	queueARN     = "arn:aws:sqs:us-west-2:123456789012:publish"
	fifoQueueARN = "arn:aws:sqs:us-west-2:123456789012:publish.fifo"
)

func TestPublishDirect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		payload       string
		want          PublishResponse
		wantErr       error
		wantPublished []string
	}{
		{
			name:          "publishes",
			payload:       `{"topic":"orders.1","data":{"id":1,"total":"9.50"},"attributes":{"kind":"created"}}`,
			want:          PublishResponse{MessageID: "id-orders.1", Delivered: 2, Gone: 1, Offset: 7, Epoch: "ep"},
			wantPublished: []string{"orders.1"},
		},
		{name: "not JSON", payload: `topic=a`, wantErr: fanout.ErrInvalid},
		{name: "not an object", payload: `"orders.1"`, wantErr: fanout.ErrInvalid},
		{name: "misspelt field", payload: `{"topic":"a","data":1,"attributs":{"k":"v"}}`, wantErr: fanout.ErrInvalid},
		{name: "attributes not strings", payload: `{"topic":"a","data":1,"attributes":{"k":1}}`, wantErr: fanout.ErrInvalid},
		{name: "refused by the fan-out", payload: `{"topic":"bad topic","data":1}`, wantErr: fanout.ErrInvalid, wantPublished: []string{"bad topic"}},
		{name: "store unavailable", payload: `{"topic":"down.1","data":1}`, wantErr: store.ErrUnavailable, wantPublished: []string{"down.1"}},
		{
			name:    "records of another event source",
			payload: `{"Records":[{"EventSource":"aws:sns","Sns":{"Message":"{\"topic\":\"a\",\"data\":1}"}}]}`,
			wantErr: fanout.ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeFanout{}
			got, err := NewPublish(f, discard()).Handle(context.Background(), json.RawMessage(tt.payload))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("response = %#v, want %#v", got, tt.want)
			}
			if topics := f.topics(); !slices.Equal(topics, tt.wantPublished) {
				t.Errorf("published %q, want %q", topics, tt.wantPublished)
			}
		})
	}
}

// The invoker reads the response as JSON, and the fan-out gets the message
// exactly as sent.
func TestPublishDirectWire(t *testing.T) {
	t.Parallel()
	f := &fakeFanout{}
	payload := `{"topic":"orders.1","data":{"id": 1, "total": "9.50"},"attributes":{"kind":"created"}}`
	got, err := NewPublish(f, discard()).Handle(context.Background(), json.RawMessage(payload))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"messageId":"id-orders.1","delivered":2,"gone":1,"failed":0,"offset":7,"epoch":"ep","duplicate":false}`; !sameJSON(t, b, []byte(want)) {
		t.Errorf("response JSON %s, want %s", b, want)
	}
	m := f.published[0]
	if string(m.Data) != `{"id": 1, "total": "9.50"}` || m.Attributes["kind"] != "created" || len(m.Attributes) != 1 {
		t.Errorf("published %+v (data %s), want the request's data and attributes", m, m.Data)
	}
}

func TestPublishSQS(t *testing.T) {
	t.Parallel()
	good := func(topic string) string { return `{"topic":"` + topic + `","data":{"n":1}}` }
	tests := []struct {
		name          string
		event         json.RawMessage
		wantRetry     []string
		wantPublished []string
	}{
		{
			name: "retries only what may succeed later",
			event: sqsEvent(t, queueARN,
				sqsRecord{"m1", good("orders.1")},
				sqsRecord{"m2", `not json`},
				sqsRecord{"m3", `{"topic":"a","data":1,"extra":true}`},
				sqsRecord{"m4", good("down.1")},
				sqsRecord{"m5", good("news")},
				sqsRecord{"m6", good("bad topic")},
				sqsRecord{"m7", good("down.2")},
				sqsRecord{"m8", good("news") + ` {}`},
			),
			wantRetry:     []string{"m4", "m7"},
			wantPublished: []string{"orders.1", "down.1", "news", "bad topic", "down.2"},
		},
		{
			name: "FIFO: nothing overtakes a retried record",
			event: sqsEvent(t, fifoQueueARN,
				sqsRecord{"m1", good("orders.1")},
				sqsRecord{"m2", `not json`},
				sqsRecord{"m3", good("down.1")},
				sqsRecord{"m4", good("news")},
				sqsRecord{"m5", `not json`},
			),
			wantRetry:     []string{"m3", "m4", "m5"},
			wantPublished: []string{"orders.1", "down.1"},
		},
		{
			name:          "all good",
			event:         sqsEvent(t, queueARN, sqsRecord{"m1", good("a")}, sqsRecord{"m2", good("b")}),
			wantPublished: []string{"a", "b"},
		},
		{name: "no records", event: json.RawMessage(`{"Records":[]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeFanout{}
			got, err := NewPublish(f, discard()).Handle(context.Background(), tt.event)
			if err != nil {
				t.Fatalf("err = %v, want a batch response", err)
			}
			resp, ok := got.(events.SQSEventResponse)
			if !ok {
				t.Fatalf("response is %T, want events.SQSEventResponse", got)
			}
			var retry []string
			for _, f := range resp.BatchItemFailures {
				retry = append(retry, f.ItemIdentifier)
			}
			if !slices.Equal(retry, tt.wantRetry) {
				t.Errorf("batch item failures %q, want %q", retry, tt.wantRetry)
			}
			if topics := f.topics(); !slices.Equal(topics, tt.wantPublished) {
				t.Errorf("published %q, want %q", topics, tt.wantPublished)
			}
			// Lambda reads a null list as "all succeeded" too, but an
			// explicit empty list leaves no doubt.
			if b, _ := json.Marshal(resp); len(tt.wantRetry) == 0 && !sameJSON(t, b, []byte(`{"batchItemFailures":[]}`)) {
				t.Errorf("response JSON %s, want an empty list", b)
			}
		})
	}
}

// Logs say what happened to which message, never what the message said.
func TestPublishLogsNoPayload(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	p := NewPublish(&fakeFanout{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	secret := `{"topic":"orders.1","data":{"card":"s3cr3t"}}`
	if _, err := p.Handle(context.Background(), json.RawMessage(secret)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Handle(context.Background(), sqsEvent(t, queueARN,
		sqsRecord{"m1", secret},
		sqsRecord{"m2", `{"topic":"down.1","data":"s3cr3t"}`},
		sqsRecord{"m3", `{"topic":"a","data":"s3cr3t","oops":1}`},
	)); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("logs contain message data:\n%s", out)
	}
	for _, want := range []string{`"topic":"orders.1"`, `"message_id":"id-orders.1"`, `"sqs_message_id":"m2"`, `"sqs_message_id":"m3"`, `"duration":`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
}

// poster stands in for API Gateway's management API: connections named
// "gone-*" have closed (410).
type poster struct {
	mu    sync.Mutex
	posts map[string][]byte
}

func (p *poster) PostToConnection(_ context.Context, id string, data []byte) error {
	if strings.HasPrefix(id, "gone-") {
		return fmt.Errorf("post to %s: %w", id, apigw.ErrGone)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.posts[id] = data
	return nil
}

// The publish Lambda's wiring end to end, but for the network: the real
// fan-out over the in-memory store, SQS records in, envelopes out.
func TestPublishThroughFanout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := store.NewMemory()
	for _, id := range []string{"c1", "c2", "gone-1"} {
		if err := mem.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := mem.Subscribe(ctx, id, "", []string{"orders.1"}); err != nil {
			t.Fatal(err)
		}
	}
	post := &poster{posts: map[string][]byte{}}
	f := fanout.New(mem, post, fanout.Options{Logger: discard(), Streams: mem, HistoryTTL: time.Minute})
	p := NewPublish(f, discard())

	got, err := p.Handle(ctx, sqsEvent(t, queueARN,
		sqsRecord{"m1", `{"topic":"orders.1","data":{"id":1},"attributes":{"kind":"created"}}`},
		sqsRecord{"m2", `{"topic":"orders.1"}`},               // no data
		sqsRecord{"m3", `{"topic":"orders.1","data":{"id":}`}, // not JSON
	))
	if err != nil {
		t.Fatal(err)
	}
	if failures := got.(events.SQSEventResponse).BatchItemFailures; len(failures) != 0 {
		t.Errorf("batch item failures %+v, want none: invalid records are dropped", failures)
	}
	if len(post.posts) != 2 {
		t.Fatalf("posted to %d connections, want c1 and c2", len(post.posts))
	}
	var m wsproto.Message
	if err := json.Unmarshal(post.posts["c1"], &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "message" || m.Topic != "orders.1" || string(m.Data) != `{"id":1}` || m.Attributes["kind"] != "created" || m.ID == "" {
		t.Errorf("envelope %s, want the published message", post.posts["c1"])
	}
	if _, err := mem.GetConnection(ctx, "gone-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("gone connection still recorded (err %v)", err)
	}

	res, err := p.Handle(ctx, json.RawMessage(`{"topic":"orders.1","data":"again"}`))
	if err != nil {
		t.Fatal(err)
	}
	// The second accepted publish to the topic: offset 2.
	if r, ok := res.(PublishResponse); !ok || r.MessageID == "" || r.Epoch == "" || r != (PublishResponse{MessageID: r.MessageID, Delivered: 2, Offset: 2, Epoch: r.Epoch}) {
		t.Errorf("response %#v, want 2 delivered under a message id, at offset 2", res)
	}
}

// framePoster counts the frames each connection got.
type framePoster struct {
	mu     sync.Mutex
	frames map[string][][]byte
}

func (p *framePoster) PostToConnection(_ context.Context, id string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frames == nil {
		p.frames = map[string][][]byte{}
	}
	p.frames[id] = append(p.frames[id], data)
	return nil
}

// ids is the data of the messages each connection got, in order.
func (p *framePoster) ids(t *testing.T) map[string][]string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]string{}
	for conn, frames := range p.frames {
		for _, f := range frames {
			m, err := wsproto.DecodeMessage(f)
			if err != nil {
				t.Fatal(err)
			}
			out[conn] = append(out[conn], string(m.Data))
		}
	}
	return out
}

// keyedStack is the publish Lambda over the real fan-out and the in-memory
// store, with two subscribers of "orders.1".
func keyedStack(t *testing.T) (*Publish, *framePoster, *store.Memory) {
	t.Helper()
	ctx := context.Background()
	mem := store.NewMemory()
	for _, id := range []string{"c1", "c2"} {
		if err := mem.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := mem.Subscribe(ctx, id, "", []string{"orders.1"}); err != nil {
			t.Fatal(err)
		}
	}
	post := &framePoster{}
	f := fanout.New(mem, post, fanout.Options{Logger: discard(), Streams: mem, HistoryTTL: time.Minute})
	return NewPublish(f, discard()), post, mem
}

// SQS delivers at least once: the same batch handled twice (its
// visibility timeout ran out, or the first invocation's answer was lost)
// delivers each message once. A record's own idempotencyKey wins over its
// SQS message id, so two SQS messages carrying one key are one publish.
func TestPublishSQSRedelivery(t *testing.T) {
	t.Parallel()
	p, post, mem := keyedStack(t)
	batch := sqsEvent(t, queueARN,
		sqsRecord{"m1", `{"topic":"orders.1","data":"one"}`},
		sqsRecord{"m2", `{"topic":"orders.1","data":"two"}`},
		sqsRecord{"m3", `{"topic":"orders.1","data":"three","idempotencyKey":"order-3"}`},
		sqsRecord{"m4", `{"topic":"orders.1","data":"three again","idempotencyKey":"order-3"}`},
	)
	for range 2 {
		got, err := p.Handle(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		if failures := got.(events.SQSEventResponse).BatchItemFailures; len(failures) != 0 {
			t.Fatalf("batch item failures %+v, want none: a duplicate is done, not failed", failures)
		}
	}
	want := []string{`"one"`, `"two"`, `"three"`}
	for _, conn := range []string{"c1", "c2"} {
		if got := post.ids(t)[conn]; !slices.Equal(got, want) {
			t.Errorf("%s got %v, want each message once: %v", conn, got, want)
		}
	}
	if _, pos, _ := mem.History(context.Background(), "orders.1", 0, 10); pos.Offset != 3 {
		t.Errorf("topic at offset %d, want 3: duplicates take no position", pos.Offset)
	}
}

// A direct invoke with the same key twice: the second answers the first's
// id and position, marked duplicate, and delivers nothing.
func TestPublishDirectIdempotent(t *testing.T) {
	t.Parallel()
	p, post, _ := keyedStack(t)
	payload := json.RawMessage(`{"topic":"orders.1","data":{"id":1},"idempotencyKey":"order-1 created"}`)
	first, err := p.Handle(context.Background(), payload)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Handle(context.Background(), payload)
	if err != nil {
		t.Fatal(err)
	}
	f, a := first.(PublishResponse), again.(PublishResponse)
	if f.Duplicate || f.Delivered != 2 || f.Offset != 1 {
		t.Fatalf("first = %+v, want offset 1 delivered to 2", f)
	}
	if want := (PublishResponse{MessageID: f.MessageID, Offset: 1, Epoch: f.Epoch, Duplicate: true}); a != want {
		t.Fatalf("again = %+v, want %+v", a, want)
	}
	if n := len(post.ids(t)["c1"]); n != 1 {
		t.Errorf("c1 got %d frames, want 1", n)
	}
	// Without a key a direct invoke is a new publish every time.
	for range 2 {
		if _, err := p.Handle(context.Background(), json.RawMessage(`{"topic":"orders.1","data":2}`)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(post.ids(t)["c1"]); n != 3 {
		t.Errorf("c1 got %d frames, want 3", n)
	}
}

// A malformed key is the record's fault: refused, dropped rather than
// retried, nothing delivered or stored.
func TestPublishBadKey(t *testing.T) {
	t.Parallel()
	p, post, mem := keyedStack(t)
	long := strings.Repeat("k", 129)
	_, err := p.Handle(context.Background(), json.RawMessage(`{"topic":"orders.1","data":1,"idempotencyKey":"`+long+`"}`))
	if !errors.Is(err, fanout.ErrInvalid) {
		t.Fatalf("direct invoke with a 129-character key: %v, want ErrInvalid", err)
	}
	got, err := p.Handle(context.Background(), sqsEvent(t, queueARN,
		sqsRecord{"m1", `{"topic":"orders.1","data":1,"idempotencyKey":"tab\there"}`},
	))
	if err != nil {
		t.Fatal(err)
	}
	if failures := got.(events.SQSEventResponse).BatchItemFailures; len(failures) != 0 {
		t.Errorf("batch item failures %+v, want the invalid record dropped", failures)
	}
	if n := len(post.ids(t)); n != 0 {
		t.Errorf("%d connections got frames, want none", n)
	}
	if _, pos, _ := mem.History(context.Background(), "orders.1", 0, 10); pos.Offset != 0 {
		t.Errorf("refused publishes left the topic at offset %d", pos.Offset)
	}
}

// A direct invoke names one recipient: a topic, a user or many topics,
// each answered in its own terms; a request naming two or none is refused
// with nothing delivered.
func TestPublishDirectShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		payload       string
		want          string // the answer's JSON
		wantErr       error
		wantPublished []string
	}{
		{
			name:          "send to a user",
			payload:       `{"userId":"alice","data":{"n":1},"attributes":{"k":"v"}}`,
			want:          `{"messageId":"id-@alice","delivered":3,"gone":0,"failed":0,"duplicate":false}`,
			wantPublished: []string{"@alice"},
		},
		{
			name:    "broadcast",
			payload: `{"topics":["a","b"],"data":1}`,
			want: `{"results":[{"topic":"a","messageId":"id-a","delivered":2,"gone":1,"failed":0,"offset":7,"epoch":"ep","duplicate":false},` +
				`{"topic":"b","messageId":"id-b","delivered":2,"gone":1,"failed":0,"offset":7,"epoch":"ep","duplicate":false}]}`,
			wantPublished: []string{"a", "b"},
		},
		{name: "topic and user", payload: `{"topic":"a","userId":"alice","data":1}`, wantErr: fanout.ErrInvalid},
		{name: "user and topics", payload: `{"userId":"alice","topics":["a"],"data":1}`, wantErr: fanout.ErrInvalid},
		{name: "no recipient", payload: `{"data":1}`, wantErr: fanout.ErrInvalid},
		{name: "topics empty", payload: `{"topics":[],"data":1}`, wantErr: fanout.ErrInvalid},
		{name: "an invalid topic among many", payload: `{"topics":["a","bad topic"],"data":1}`, wantErr: fanout.ErrInvalid},
		{name: "user id too long", payload: `{"userId":"` + strings.Repeat("u", 129) + `","data":1}`, wantErr: fanout.ErrInvalid, wantPublished: []string{"@" + strings.Repeat("u", 129)}},
		{name: "user's store unavailable", payload: `{"userId":"down-1","data":1}`, wantErr: store.ErrUnavailable, wantPublished: []string{"@down-1"}},
		{name: "one topic's store unavailable", payload: `{"topics":["a","down.1","b"],"data":1}`, wantErr: store.ErrUnavailable, wantPublished: []string{"a", "down.1", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeFanout{}
			got, err := NewPublish(f, discard()).Handle(context.Background(), json.RawMessage(tt.payload))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				b, _ := json.Marshal(got)
				if !sameJSON(t, b, []byte(tt.want)) {
					t.Errorf("response %s, want %s", b, tt.want)
				}
			}
			if topics := f.topics(); !slices.Equal(topics, tt.wantPublished) {
				t.Errorf("published %q, want %q", topics, tt.wantPublished)
			}
		})
	}
}

// From SQS, the three shapes are handled as a publish is: an invalid
// record dropped, a store failure retried, and each keyed by its SQS
// message id unless it carries a key.
func TestPublishSQSShapes(t *testing.T) {
	t.Parallel()
	f := &fakeFanout{}
	got, err := NewPublish(f, discard()).Handle(context.Background(), sqsEvent(t, queueARN,
		sqsRecord{"m1", `{"userId":"alice","data":1}`},
		sqsRecord{"m2", `{"topics":["a","b"],"data":1,"idempotencyKey":"own"}`},
		sqsRecord{"m3", `{"userId":"alice","topic":"a","data":1}`},
		sqsRecord{"m4", `{"userId":"down-1","data":1}`},
		sqsRecord{"m5", `{"topics":["c","down.2"],"data":1}`},
		sqsRecord{"m6", `{"topics":["bad topic"],"data":1}`},
	))
	if err != nil {
		t.Fatal(err)
	}
	var retry []string
	for _, fail := range got.(events.SQSEventResponse).BatchItemFailures {
		retry = append(retry, fail.ItemIdentifier)
	}
	if want := []string{"m4", "m5"}; !slices.Equal(retry, want) {
		t.Errorf("batch item failures %q, want %q", retry, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := map[string]string{}
	for _, m := range f.published {
		keys[m.Topic] = m.IdempotencyKey
	}
	want := map[string]string{"@alice": "m1", "a": "own", "b": "own", "@down-1": "m4", "c": "m5", "down.2": "m5"}
	if !maps.Equal(keys, want) {
		t.Errorf("published with keys %v, want %v", keys, want)
	}
}

// The three shapes through the real fan-out and store, handled twice as
// SQS may deliver them: each connection gets each message once, a user's
// frame names the user and has no topic or position, and a broadcast's
// frames carry each topic's own position.
func TestPublishShapesThroughFanout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := store.NewMemory()
	for _, c := range []struct{ id, user string }{{"alice-1", "alice"}, {"alice-2", "alice"}, {"bob-1", "bob"}} {
		if err := mem.PutConnection(ctx, store.Connection{ID: c.id, Subject: c.user, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := mem.Subscribe(ctx, c.id, c.user, []string{"a", "b"}); err != nil {
			t.Fatal(err)
		}
	}
	post := &framePoster{}
	p := NewPublish(fanout.New(mem, post, fanout.Options{Logger: discard(), Streams: mem, HistoryTTL: time.Minute}), discard())
	batch := sqsEvent(t, queueARN,
		sqsRecord{"m1", `{"userId":"alice","data":"hi alice"}`},
		sqsRecord{"m2", `{"topics":["a","b"],"data":"to all"}`},
	)
	for range 2 {
		got, err := p.Handle(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if failures := got.(events.SQSEventResponse).BatchItemFailures; len(failures) != 0 {
			t.Fatalf("batch item failures %+v", failures)
		}
	}
	post.mu.Lock()
	defer post.mu.Unlock()
	for id, want := range map[string]int{"alice-1": 3, "alice-2": 3, "bob-1": 2} {
		if n := len(post.frames[id]); n != want {
			t.Errorf("%s got %d frames, want %d", id, n, want)
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(post.frames["alice-1"][0], &m); err != nil {
		t.Fatal(err)
	}
	if string(m["user"]) != `"alice"` || m["topic"] != nil || m["offset"] != nil || m["epoch"] != nil || string(m["data"]) != `"hi alice"` {
		t.Errorf("alice's frame %s, want one naming the user, without topic or position", post.frames["alice-1"][0])
	}
	for _, topic := range []string{"a", "b"} {
		if _, pos, _ := mem.History(ctx, topic, 0, 10); pos.Offset != 1 {
			t.Errorf("%s at offset %d, want 1: the redelivered broadcast is a duplicate", topic, pos.Offset)
		}
	}
}
