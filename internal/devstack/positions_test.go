package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/assembly"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/poll"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
)

// TestPositions drives topic positions, idempotent publishes and History
// through the whole stack, once per store: backends over real gRPC and
// HTTP, browsers over real WebSockets.
func TestPositions(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s storeCase) {
		env := s.env("positions", nil)
		e := start(t, env)
		t.Run("concurrent publishers", func(t *testing.T) { testConcurrentOffsets(t, e, env) })
		t.Run("idempotent publishes", func(t *testing.T) { testIdempotentPublishes(t, e) })
		t.Run("history", func(t *testing.T) { testHistory(t, e) })
		t.Run("bad input stores nothing", func(t *testing.T) { testBadPositionInput(t, e) })
		if s.db != nil {
			t.Run("keyed retries under throttling", func(t *testing.T) { testKeyedRetriesUnderThrottling(t, e, s.db) })
		}

		// HISTORY_TTL=0: positions still, history none.
		testNoHistory(t, start(t, s.env("positions-no-history", map[string]string{"HISTORY_TTL": "0"})))
	})
}

// subscribeReader connects, subscribes to topic and waits for the answer.
// It does not hold the answer to one shape: recovery adds fields to it.
func subscribeReader(t *testing.T, e *e2e, topic string) *reader {
	t.Helper()
	r := dialReader(t, e)
	req, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": []string{topic}})
	r.send(t, string(req))
	f, ok := r.next(t)
	if !ok {
		t.Fatal("the connection closed")
	}
	if f.Type != "subscribed" {
		t.Fatalf("answer to subscribe = %s, want a subscribed frame", f.raw)
	}
	return r
}

// until reads message frames of topic until one with data marker, and
// returns those before it.
func (r *reader) until(t *testing.T, topic, marker string) []frame {
	t.Helper()
	var got []frame
	for {
		f, ok := r.next(t)
		if !ok {
			t.Fatal("the connection closed")
		}
		if f.Type != "message" || f.Topic != topic {
			t.Fatalf("unexpected frame %s", f.raw)
		}
		if string(f.Data) == marker {
			return got
		}
		got = append(got, f)
	}
}

func (e *e2e) publishJSON(ctx context.Context, c wsgatewayv1.PublisherServiceClient, topic, key string, data any) (*wsgatewayv1.PublishResponse, error) {
	v, err := structpb.NewValue(data)
	if err != nil {
		return nil, err
	}
	return c.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: topic, Data: v, IdempotencyKey: key})
}

// restPublishResponse is a REST publish's answer; proto3's JSON spells
// 64-bit integers as strings.
type restPublishResponse struct {
	MessageID string `json:"messageId"`
	Delivered int    `json:"delivered"`
	Offset    string `json:"offset"`
	Epoch     string `json:"epoch"`
	Duplicate bool   `json:"duplicate"`
}

// rest sends a REST call without failing the test itself, so that
// goroutines can use it.
func rest(method, url, body string, out any) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, string(raw), err
		}
	}
	return resp.StatusCode, string(raw), nil
}

// secondPublisher starts another publisher service over the same store and
// the same emulated API Gateway, as a second container would be: its own
// fan-out and, for DynamoDB, its own client of the table.
func secondPublisher(t *testing.T, e *e2e, env map[string]string) wsgatewayv1.PublisherServiceClient {
	t.Helper()
	return secondPublisherOver(t, e, env, nil)
}

// ratedStore is a store as the publisher service needs it.
type ratedStore interface {
	store.Store
	store.RateLimiter
}

// secondPublisherOver is secondPublisher with its store seen through wrap
// (nil: as it is), for a service whose store calls a test delays.
func secondPublisherOver(t *testing.T, e *e2e, env map[string]string, wrap func(ratedStore) ratedStore) wsgatewayv1.PublisherServiceClient {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	opts := assembly.Options{
		Log:                slog.New(slog.DiscardHandler),
		LocalCredentials:   true,
		ManagementEndpoint: "http://" + e.stack.WSAddr,
	}
	if cfg.DynamoDBEndpoint == "" {
		opts.Store = e.stack.Store // one process's memory is the only memory store there is
	}
	if wrap != nil {
		st, ok := opts.Store.(ratedStore)
		if cfg.DynamoDBEndpoint != "" {
			// The service's own client of the table, as assembly makes it.
			awsCfg, err := cfg.AWS(context.Background(), true)
			if err != nil {
				t.Fatal(err)
			}
			st, ok = store.NewDynamoDB(store.NewDynamoDBClient(awsCfg, cfg.DynamoDBEndpoint), cfg.TableName), true
		}
		if !ok {
			t.Fatalf("store %T keeps no rate limits", opts.Store)
		}
		opts.Store = wrap(st)
	}
	gw, err := assembly.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := gw.Publisher
	for _, l := range []*net.Listener{&srv.GRPC, &srv.HTTP} {
		if *l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- publisher.Run(ctx, srv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second publisher stopped with %v", err)
		}
	})
	conn, err := grpc.NewClient(srv.GRPC.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	poll.Until(t, eventually, "second publisher SERVING", func() bool {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	return wsgatewayv1.NewPublisherServiceClient(conn)
}

// Eight publishers, half of them on a second publisher service, publish
// 25 messages each to one topic, many at once: the answers hold offsets
// 1..200, each once, in one epoch, and every subscriber receives each of
// them once. The order on the wire across concurrent publishers is not
// promised, so the check is on the set.
//
// What this checks is the whole stack's path: two services' publishers
// taking positions from one counter at once and fanning out what they took
// to every subscriber. The counter's own races are the store conformance
// suite's, on both stores. Up to 64 publishes in flight at once, over two
// services, is what makes this one real: 25 a publisher keep all eight
// publishing together, eight in flight each, three times over, where more
// would only repeat the same race at several DynamoDB calls and three
// posts apiece.
func testConcurrentOffsets(t *testing.T, e *e2e, env map[string]string) {
	const publishers, each, subscribers, inFlight = 8, 25, 3, 8
	const total = publishers * each
	readers := make([]*reader, subscribers)
	for i := range readers {
		readers[i] = subscribeReader(t, e, "stream")
	}
	clients := []wsgatewayv1.PublisherServiceClient{e.grpc, secondPublisher(t, e, env)}

	var mu sync.Mutex
	answered := map[uint64]int{}
	epochs := map[string]bool{}
	inFlightNow, peak := 0, 0 // publishes awaiting their answer: now, and the most at once
	var g errgroup.Group
	for p := range publishers {
		c := clients[p%2]
		g.Go(func() error {
			var pg errgroup.Group
			pg.SetLimit(inFlight)
			for i := range each {
				pg.Go(func() error {
					mu.Lock()
					inFlightNow++
					peak = max(peak, inFlightNow)
					mu.Unlock()
					res, err := e.publishJSON(context.Background(), c, "stream", "", fmt.Sprintf("p%d-%d", p, i))
					mu.Lock()
					inFlightNow--
					mu.Unlock()
					if err != nil {
						return err
					}
					if res.GetDelivered() != subscribers {
						return fmt.Errorf("publish p%d-%d = %v, want %d delivered", p, i, res, subscribers)
					}
					mu.Lock()
					answered[res.GetOffset()]++
					epochs[res.GetEpoch()] = true
					mu.Unlock()
					return nil
				})
			}
			return pg.Wait()
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// Several publishers' windows overlapped: otherwise the positions were
	// hardly raced for.
	if peak < 2*inFlight {
		t.Errorf("at most %d publishes were in flight at once, want at least %d: two publishers' windows", peak, 2*inFlight)
	}
	if len(epochs) != 1 || epochs[""] {
		t.Fatalf("answers name epochs %v, want one", epochs)
	}
	for o := uint64(1); o <= total; o++ {
		if answered[o] != 1 {
			t.Errorf("offset %d answered %d times, want once", o, answered[o])
		}
	}
	if len(answered) != total {
		t.Fatalf("%d distinct offsets answered, want %d (1..%d)", len(answered), total, total)
	}

	var epoch string
	for ep := range epochs {
		epoch = ep
	}
	res, err := e.publishJSON(context.Background(), e.grpc, "stream", "", "end")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range readers {
		got := r.until(t, "stream", `"end"`)
		seen := map[uint64]int{}
		for _, f := range got {
			if f.Epoch != epoch {
				t.Fatalf("subscriber %d: frame %s, want epoch %s", i, f.raw, epoch)
			}
			seen[f.Offset]++
		}
		for o := uint64(1); o <= total; o++ {
			if seen[o] != 1 {
				t.Errorf("subscriber %d received offset %d %d times, want once", i, o, seen[o])
			}
		}
		if len(got) != total {
			t.Errorf("subscriber %d received %d frames, want %d", i, len(got), total)
		}
	}
	if res.GetOffset() != total+1 {
		t.Errorf("the publish after them took offset %d, want %d", res.GetOffset(), total+1)
	}
}

// Sixteen publishes with one key, at once, half over gRPC and half over
// REST: one fans out, all answer its id and position, subscribers get one
// frame.
func testIdempotentPublishes(t *testing.T, e *e2e) {
	const callers = 16
	readers := []*reader{subscribeReader(t, e, "once"), subscribeReader(t, e, "once")}
	type answer struct {
		id, epoch string
		offset    uint64
		duplicate bool
		delivered int
	}
	answers := make(chan answer, callers)
	var g errgroup.Group
	for i := range callers {
		g.Go(func() error {
			if i%2 == 0 {
				res, err := e.publishJSON(context.Background(), e.grpc, "once", "order-77", "created")
				if err != nil {
					return err
				}
				answers <- answer{res.GetMessageId(), res.GetEpoch(), res.GetOffset(), res.GetDuplicate(), int(res.GetDelivered())}
				return nil
			}
			var res restPublishResponse
			code, body, err := rest(http.MethodPost, e.http+"/v1/topics/once:publish", `{"data":"created","idempotencyKey":"order-77"}`, &res)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("REST publish = %d %s, %v", code, body, err)
			}
			var offset uint64
			fmt.Sscan(res.Offset, &offset)
			answers <- answer{res.MessageID, res.Epoch, offset, res.Duplicate, res.Delivered}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	close(answers)
	fresh := 0
	var first *answer
	for a := range answers {
		if !a.duplicate {
			fresh++
			if a.delivered != len(readers) {
				t.Errorf("the fresh publish delivered to %d, want %d", a.delivered, len(readers))
			}
		} else if a.delivered != 0 {
			t.Errorf("a duplicate answered %d delivered, want 0", a.delivered)
		}
		if first == nil {
			first = &a
		} else if a.id != first.id || a.offset != first.offset || a.epoch != first.epoch {
			t.Errorf("answer %+v names another message than %+v", a, *first)
		}
	}
	if fresh != 1 || first.offset != 1 || first.id == "" {
		t.Fatalf("%d fresh publishes (one answer %+v), want exactly one, at offset 1", fresh, *first)
	}
	if _, err := e.publishJSON(context.Background(), e.grpc, "once", "", "end"); err != nil {
		t.Fatal(err)
	}
	for i, r := range readers {
		got := r.until(t, "once", `"end"`)
		if len(got) != 1 || got[0].ID != first.id || got[0].Offset != 1 {
			t.Errorf("subscriber %d got %d frames before the end (%v), want the one message %s", i, len(got), got, first.id)
		}
	}
}

type historyReply struct {
	Messages []struct {
		MessageID   string            `json:"messageId"`
		Offset      string            `json:"offset"`
		Data        json.RawMessage   `json:"data"`
		Attributes  map[string]string `json:"attributes"`
		PublishTime time.Time         `json:"publishTime"`
	} `json:"messages"`
	Epoch        string `json:"epoch"`
	LatestOffset string `json:"latestOffset"`
}

// History returns what was published after a position, oldest first, as
// it was published.
func testHistory(t *testing.T, e *e2e) {
	var ids []string
	var epoch string
	for i := 1; i <= 5; i++ {
		data, _ := structpb.NewValue(map[string]any{"n": float64(i)})
		res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: "hist", Data: data, Attributes: map[string]string{"k": fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetOffset() != uint64(i) {
			t.Fatalf("publish %d took offset %d", i, res.GetOffset())
		}
		ids, epoch = append(ids, res.GetMessageId()), res.GetEpoch()
	}
	got, err := e.grpc.History(context.Background(), &wsgatewayv1.HistoryRequest{Topic: "hist", SinceOffset: 1, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEpoch() != epoch || got.GetLatestOffset() != 5 || len(got.GetMessages()) != 3 {
		t.Fatalf("History(since 1, limit 3) = %v, want 3 messages of epoch %s, latest 5", got, epoch)
	}
	for i, m := range got.GetMessages() {
		n := i + 2
		if m.GetOffset() != uint64(n) || m.GetMessageId() != ids[n-1] || m.GetData().GetStructValue().GetFields()["n"].GetNumberValue() != float64(n) ||
			m.GetAttributes()["k"] != fmt.Sprint(n) || time.Since(m.GetPublishTime().AsTime()) > time.Minute {
			t.Errorf("message %d = %v, want offset %d, id %s and its data", i, m, n, ids[n-1])
		}
	}

	var r historyReply
	if code, body, err := rest(http.MethodGet, e.http+"/v1/topics/hist/history?sinceOffset=3&limit=1", "", &r); err != nil || code != http.StatusOK {
		t.Fatalf("REST history = %d %s, %v", code, body, err)
	}
	if r.Epoch != epoch || r.LatestOffset != "5" || len(r.Messages) != 1 || r.Messages[0].Offset != "4" ||
		r.Messages[0].MessageID != ids[3] || !jsonEqual(r.Messages[0].Data, []byte(`{"n":4}`)) || r.Messages[0].Attributes["k"] != "4" {
		t.Fatalf("REST history since 3, limit 1 = %+v, want message 4", r)
	}
	// Every retained message, by default.
	if code, body, err := rest(http.MethodGet, e.http+"/v1/topics/hist/history", "", &r); err != nil || code != http.StatusOK || len(r.Messages) != 5 {
		t.Fatalf("REST history = %d %s, %v; want all 5", code, body, err)
	}
}

// HISTORY_TTL=0 keeps no message, but offsets go on and History says
// where the topic is.
func testNoHistory(t *testing.T, e *e2e) {
	for i := 1; i <= 3; i++ {
		res, err := e.publishJSON(context.Background(), e.grpc, "fleeting", "", float64(i))
		if err != nil || res.GetOffset() != uint64(i) {
			t.Fatalf("publish %d = %v, %v; want offset %d", i, res, err, i)
		}
	}
	var r historyReply
	if code, body, err := rest(http.MethodGet, e.http+"/v1/topics/fleeting/history", "", &r); err != nil || code != http.StatusOK {
		t.Fatalf("REST history = %d %s, %v", code, body, err)
	}
	if len(r.Messages) != 0 || r.LatestOffset != "3" || r.Epoch == "" {
		t.Fatalf("history with HISTORY_TTL=0 = %+v, want no message, latest offset 3 in an epoch", r)
	}
}

// Refused publishes and History calls answer 400 in the API's terms and
// store nothing: the topic never gets a position and its subscriber no
// frame. An empty REST key is no key.
func testBadPositionInput(t *testing.T, e *e2e) {
	r := subscribeReader(t, e, "guarded")
	for name, key := range map[string]string{
		"129 characters":    strings.Repeat("k", 129),
		"a newline":         "line\nbreak",
		"not ASCII":         "clé",
		"a DEL control":     "a\x7f",
		"a NUL":             "\x00",
		"an escape control": "\x1b[31m",
	} {
		body, _ := json.Marshal(map[string]any{"data": 1, "idempotencyKey": key})
		code, reply, err := rest(http.MethodPost, e.http+"/v1/topics/guarded:publish", string(body), nil)
		if err != nil || code != http.StatusBadRequest || !strings.Contains(reply, "idempotency key") {
			t.Errorf("REST publish with a key of %s = %d %s, %v; want 400 about the idempotency key", name, code, reply, err)
		}
		_, err = e.publishJSON(context.Background(), e.grpc, "guarded", key, 1)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("gRPC publish with a key of %s = %v, want InvalidArgument", name, err)
		}
	}
	for _, path := range []string{
		"/v1/topics/bad%20topic/history",
		"/v1/topics/guarded/history?limit=-1",
		"/v1/topics/guarded/history?limit=many",
		"/v1/topics/guarded/history?sinceOffset=-1",
		"/v1/topics/guarded/history?sinceOffset=first",
	} {
		if code, reply, err := rest(http.MethodGet, e.http+path, "", nil); err != nil || code != http.StatusBadRequest || !strings.Contains(reply, `"message"`) {
			t.Errorf("GET %s = %d %s, %v; want 400 with a message", path, code, reply, err)
		}
	}
	if _, err := e.grpc.History(context.Background(), &wsgatewayv1.HistoryRequest{Topic: "bad topic"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC History of a bad topic = %v, want InvalidArgument", err)
	}

	// Nothing was stored: no position, and the first message the
	// subscriber gets is the next accepted one.
	var h historyReply
	if code, body, err := rest(http.MethodGet, e.http+"/v1/topics/guarded/history", "", &h); err != nil || code != http.StatusOK || h.LatestOffset != "0" || len(h.Messages) != 0 {
		t.Fatalf("history after refusals = %d %s, %v; want no position", code, body, err)
	}
	// "idempotencyKey": "" is no key: both publishes go out.
	for want := 1; want <= 2; want++ {
		var res restPublishResponse
		code, body, err := rest(http.MethodPost, e.http+"/v1/topics/guarded:publish", `{"data":"empty key","idempotencyKey":""}`, &res)
		if err != nil || code != http.StatusOK || res.Duplicate || res.Offset != fmt.Sprint(want) {
			t.Fatalf("REST publish with an empty key = %d %s, %v; want a fresh publish at offset %d", code, body, err, want)
		}
	}
	if _, err := e.publishJSON(context.Background(), e.grpc, "guarded", "", "end"); err != nil {
		t.Fatal(err)
	}
	got := r.until(t, "guarded", `"end"`)
	if len(got) != 2 || got[0].Offset != 1 || got[1].Offset != 2 {
		t.Errorf("subscriber got %v before the end, want the two empty-key publishes at offsets 1 and 2", got)
	}
}

// With DynamoDB throttling half of all requests, and at the start every
// request for a while (more than the store's own retries absorb), backends
// publish 32 keyed messages at once and retry each with its key until it
// is accepted, as a client library does after UNAVAILABLE or a deadline:
// every subscriber gets each message exactly once, and the accepted
// publishes hold distinct offsets.
//
// The callers' retries come from the burst at the start, whatever the
// number of messages: it outlasts the store's attempts at every worker's
// first publish, and ends once each worker has seen a publish fail (200
// requests bound it, should that never happen): more of it would only make
// the workers fail again as they did, each failure a second or two of the
// store's backoff. After it every other request is throttled, so each of
// the 32 publishes has its several calls retried by the store; more
// publishes would only add backoff waits and DynamoDB calls.
func testKeyedRetriesUnderThrottling(t *testing.T, e *e2e, db *dynalite.Server) {
	const workers, each = 4, 8
	readers := []*reader{subscribeReader(t, e, "retried"), subscribeReader(t, e, "retried")}
	before := db.Throttled()
	db.Throttle(0.5, dynalite.Throttling)
	db.ThrottleNext(200, dynalite.Throttling)

	var mu sync.Mutex
	ids := map[string]string{}     // key → the message id its publish answered
	offsets := map[uint64]string{} // offset → key
	retries := 0
	failedWorkers := 0 // workers that have had a publish fail
	var g errgroup.Group
	for w := range workers {
		g.Go(func() error {
			failed := false
			for i := range each {
				key := fmt.Sprintf("w%d-%d", w, i)
				for attempt := 1; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					res, err := e.publishJSON(ctx, e.grpc, "retried", key, key)
					cancel()
					if err == nil {
						mu.Lock()
						if prev, ok := ids[key]; ok && prev != res.GetMessageId() {
							mu.Unlock()
							return fmt.Errorf("key %s answered %s, then %s", key, prev, res.GetMessageId())
						}
						ids[key] = res.GetMessageId()
						if other, ok := offsets[res.GetOffset()]; ok && other != key {
							mu.Unlock()
							return fmt.Errorf("offset %d answered for %s and %s", res.GetOffset(), other, key)
						}
						offsets[res.GetOffset()] = key
						mu.Unlock()
						break
					}
					if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded || attempt == 30 {
						return fmt.Errorf("publish %s, attempt %d: %v", key, attempt, err)
					}
					mu.Lock()
					retries++
					if !failed {
						failed = true
						if failedWorkers++; failedWorkers == workers {
							db.ThrottleNext(0, dynalite.Throttling) // the burst has done its part
						}
					}
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
			}
			return nil
		})
	}
	err := g.Wait()
	db.Throttle(0, "")
	db.ThrottleNext(0, dynalite.Throttling) // what is left of the burst, should a worker have given up
	if err != nil {
		t.Fatal(err)
	}
	if db.Throttled() == before {
		t.Fatal("nothing was throttled: the test tested no fault")
	}
	t.Logf("%d requests throttled, %d publishes retried by the caller", db.Throttled()-before, retries)
	if failedWorkers < workers {
		t.Fatalf("%d of %d workers had a publish fail: the burst ran out before it outlasted the store's attempts at each", failedWorkers, workers)
	}

	if _, err := e.publishJSON(context.Background(), e.grpc, "retried", "", "end"); err != nil {
		t.Fatal(err)
	}
	for i, r := range readers {
		got := map[string]int{}
		for _, f := range r.until(t, "retried", `"end"`) {
			var key string
			json.Unmarshal(f.Data, &key)
			got[key]++
			if f.ID != ids[key] {
				t.Errorf("subscriber %d got %s as %s, but its publish answered %s", i, key, f.ID, ids[key])
			}
		}
		for key := range ids {
			if got[key] != 1 {
				t.Errorf("subscriber %d got %s %d times, want once", i, key, got[key])
			}
		}
		if len(got) != workers*each {
			t.Errorf("subscriber %d got %d distinct messages, want %d", i, len(got), workers*each)
		}
	}
}
