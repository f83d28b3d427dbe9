package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
)

func (e *edge) client(t *testing.T) (context.Context, wsgatewayv1.PublisherServiceClient) {
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", bearer(testKey)),
		wsgatewayv1.NewPublisherServiceClient(e.grpc)
}

// rest sends a request and decodes a 200's JSON into out.
func (e *edge) rest(t *testing.T, method, path, body string, out any) restReply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearer(testKey))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := restReply{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		var b struct {
			Code    codes.Code `json:"code"`
			Message string     `json:"message"`
		}
		json.Unmarshal(raw, &b)
		r.Code, r.Message = b.Code, b.Message
		return r
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s %s: %s: %v", method, path, raw, err)
	}
	return r
}

// Publish answers each message's position, over gRPC and REST; a repeated
// idempotency key answers the first publish's, marked duplicate.
func TestPublishAnswersPositions(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	ctx, c := e.client(t)

	first, err := c.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "orders", Data: structpb.NewNumberValue(1)})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetOffset() != 1 || first.GetEpoch() == "" || first.GetDuplicate() {
		t.Fatalf("first publish = %v, want offset 1 in an epoch", first)
	}

	// REST: proto3's JSON spells 64-bit integers as strings.
	var second struct {
		MessageID string `json:"messageId"`
		Offset    string `json:"offset"`
		Epoch     string `json:"epoch"`
		Duplicate bool   `json:"duplicate"`
	}
	if r := e.rest(t, http.MethodPost, "/v1/topics/orders:publish", `{"data":2,"idempotencyKey":"order-2"}`, &second); r.Status != http.StatusOK {
		t.Fatalf("REST publish = %d %q", r.Status, r.Message)
	}
	if second.Offset != "2" || second.Epoch != first.GetEpoch() || second.Duplicate {
		t.Fatalf("REST publish = %+v, want offset 2 of epoch %s", second, first.GetEpoch())
	}

	// The same key again, over gRPC: the first answer, nothing new.
	dup, err := c.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "orders", Data: structpb.NewNumberValue(2), IdempotencyKey: "order-2"})
	if err != nil {
		t.Fatal(err)
	}
	if !dup.GetDuplicate() || dup.GetMessageId() != second.MessageID || dup.GetOffset() != 2 || dup.GetEpoch() != second.Epoch ||
		dup.GetDelivered()+dup.GetGone()+dup.GetFailed() != 0 {
		t.Fatalf("repeated key = %v, want the first answer (%+v) marked duplicate with zero counts", dup, second)
	}
	// "idempotencyKey": "" is no key (proto3 cannot tell it from absent).
	var third struct {
		Offset    string `json:"offset"`
		Duplicate bool   `json:"duplicate"`
	}
	for want := 3; want <= 4; want++ {
		if r := e.rest(t, http.MethodPost, "/v1/topics/orders:publish", `{"data":3,"idempotencyKey":""}`, &third); r.Status != http.StatusOK {
			t.Fatalf("REST publish with an empty key = %d %q", r.Status, r.Message)
		}
		if third.Offset != fmt.Sprint(want) || third.Duplicate {
			t.Fatalf("REST publish with an empty key = %+v, want a fresh publish at offset %d", third, want)
		}
	}
}

// A malformed key is refused on both APIs, and nothing is stored: the
// topic never got a position.
func TestPublishRefusesBadKeys(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	ctx, c := e.client(t)
	for name, key := range map[string]string{
		"over 128 characters": strings.Repeat("k", 129),
		"control character":   "a\x01b",
		"not ASCII":           "schlüssel",
	} {
		_, err := c.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "keys", Data: structpb.NewNumberValue(1), IdempotencyKey: key})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "idempotency key") {
			t.Errorf("gRPC, key %s: %v, want InvalidArgument about the idempotency key", name, err)
		}
		body, _ := json.Marshal(map[string]any{"data": 1, "idempotencyKey": key})
		if r := e.rest(t, http.MethodPost, "/v1/topics/keys:publish", string(body), nil); r.Status != http.StatusBadRequest || !strings.Contains(r.Message, "idempotency key") {
			t.Errorf("REST, key %s: %d %q, want 400 about the idempotency key", name, r.Status, r.Message)
		}
	}
	if _, pos, _ := e.store.History(t.Context(), "keys", 0, 10); pos != (store.Position{}) {
		t.Errorf("refused publishes left the topic at %+v, want no position", pos)
	}
}

type historyJSON struct {
	Messages []struct {
		MessageID   string            `json:"messageId"`
		Offset      string            `json:"offset"`
		Data        json.RawMessage   `json:"data"`
		Attributes  map[string]string `json:"attributes"`
		PublishTime string            `json:"publishTime"`
	} `json:"messages"`
	Epoch        string `json:"epoch"`
	LatestOffset string `json:"latestOffset"`
}

// History returns what was published after a position, oldest first, as
// it was published, over gRPC and REST.
func TestHistory(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	ctx, c := e.client(t)
	var ids []string
	var epoch string
	for i := 1; i <= 5; i++ {
		data, _ := structpb.NewValue(map[string]any{"n": float64(i), "tags": []any{"a", true, nil}})
		res, err := c.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "orders", Data: data, Attributes: map[string]string{"i": fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		ids, epoch = append(ids, res.GetMessageId()), res.GetEpoch()
	}

	got, err := c.History(ctx, &wsgatewayv1.HistoryRequest{Topic: "orders", SinceOffset: 2, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEpoch() != epoch || got.GetLatestOffset() != 5 || len(got.GetMessages()) != 2 {
		t.Fatalf("History(since 2, limit 2) = %v, want 2 messages, epoch %s, latest 5", got, epoch)
	}
	for i, m := range got.GetMessages() {
		n := i + 3
		data, _ := json.Marshal(m.GetData().AsInterface())
		if m.GetOffset() != uint64(n) || m.GetMessageId() != ids[n-1] || string(data) != fmt.Sprintf(`{"n":%d,"tags":["a",true,null]}`, n) ||
			m.GetAttributes()["i"] != fmt.Sprint(n) || time.Since(m.GetPublishTime().AsTime()) > time.Minute {
			t.Errorf("message %d = %v, want offset %d, id %s, its data and attributes", i, m, n, ids[n-1])
		}
	}

	var rest historyJSON
	if r := e.rest(t, http.MethodGet, "/v1/topics/orders/history?sinceOffset=4", "", &rest); r.Status != http.StatusOK {
		t.Fatalf("REST history = %d %q", r.Status, r.Message)
	}
	if rest.Epoch != epoch || rest.LatestOffset != "5" || len(rest.Messages) != 1 || rest.Messages[0].Offset != "5" ||
		rest.Messages[0].MessageID != ids[4] || !jsonEqual(rest.Messages[0].Data, `{"n":5,"tags":["a",true,null]}`) {
		t.Fatalf("REST history since 4 = %+v, want message 5", rest)
	}

	// Past the end, and a topic never published to.
	if r := e.rest(t, http.MethodGet, "/v1/topics/orders/history?sinceOffset=5", "", &rest); r.Status != http.StatusOK || len(rest.Messages) != 0 || rest.LatestOffset != "5" {
		t.Fatalf("REST history since 5 = %d %+v, want none, latest 5", r.Status, rest)
	}
	none, err := c.History(ctx, &wsgatewayv1.HistoryRequest{Topic: "quiet"})
	if err != nil || len(none.GetMessages()) != 0 || none.GetLatestOffset() != 0 || none.GetEpoch() != "" {
		t.Fatalf("History(quiet) = %v, %v; want nothing", none, err)
	}
}

// limit 0 means 100, above 1000 means 1000; what is asked for is what the
// store is asked.
func TestHistoryLimits(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	f := fanout.New(st, refusingPoster{}, fanout.Options{Streams: st, HistoryTTL: time.Minute})
	for range 1001 {
		if _, err := f.Publish(t.Context(), fanout.Message{Topic: "many", Data: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	svc := publisher.NewService(f, st)
	for _, tc := range []struct {
		limit int32
		want  int
	}{{0, 100}, {1, 1}, {1000, 1000}, {1001, 1000}, {1 << 30, 1000}} {
		res, err := svc.History(t.Context(), &wsgatewayv1.HistoryRequest{Topic: "many", Limit: tc.limit})
		if err != nil || len(res.GetMessages()) != tc.want || res.GetMessages()[0].GetOffset() != 1 {
			t.Errorf("History(limit %d) = %d messages, %v; want %d from offset 1", tc.limit, len(res.GetMessages()), err, tc.want)
		}
	}
}

// Bad History requests are refused in the API's terms, over both APIs.
func TestHistoryRefusals(t *testing.T) {
	t.Parallel()
	e := startEdge(t, edgeOptions{})
	ctx, c := e.client(t)
	for _, req := range []*wsgatewayv1.HistoryRequest{
		{Topic: ""},
		{Topic: "bad topic"},
		{Topic: "orders", Limit: -1},
	} {
		if _, err := c.History(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("History(%v) = %v, want InvalidArgument", req, err)
		}
	}
	for _, path := range []string{"/v1/topics/bad%20topic/history", "/v1/topics/orders/history?limit=-5"} {
		if r := e.rest(t, http.MethodGet, path, "", nil); r.Status != http.StatusBadRequest || r.Message == "" {
			t.Errorf("GET %s = %d %q, want 400 with a reason", path, r.Status, r.Message)
		}
	}
}

// downHistory fails History as an unreachable DynamoDB does.
type downHistory struct{ *store.Memory }

func (downHistory) History(context.Context, string, uint64, int) ([]store.Retained, store.Position, error) {
	return nil, store.Position{}, fmt.Errorf("%w: dial tcp 10.0.0.7:443: connection refused", store.ErrUnavailable)
}

// A store outage is Unavailable, without the backend's detail.
func TestHistoryStoreDown(t *testing.T) {
	t.Parallel()
	svc := publisher.NewService(nil, downHistory{store.NewMemory()})
	_, err := svc.History(t.Context(), &wsgatewayv1.HistoryRequest{Topic: "orders"})
	if st := status.Convert(err); st.Code() != codes.Unavailable || strings.Contains(st.Message(), "10.0.0.7") || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("History with the store down = %v, want Unavailable hiding the address", err)
	}
}

func jsonEqual(a json.RawMessage, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	ax, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(ax) == string(by)
}
