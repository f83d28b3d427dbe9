package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/store"
)

// TestRecovery drives recovering subscribes through the whole stack, once
// per store: a browser over a real WebSocket is cut off server-side, as
// API Gateway's 2-hour close does, misses messages, reconnects and asks
// for them by position.
func TestRecovery(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s storeCase) {
		// Each stack its own table on the one dynalite.
		stack := func(table string, settings map[string]string) *e2e {
			return start(t, s.env(table, settings))
		}
		t.Run("missed messages are replayed", func(t *testing.T) {
			t.Parallel()
			testRecoveryReplays(t, stack("recovery", map[string]string{"RECOVERY_MAX_MESSAGES": "5"}))
		})
		t.Run("retention passed", func(t *testing.T) {
			t.Parallel()
			testRecoveryExpired(t, stack("recovery-expiry", map[string]string{"HISTORY_TTL": "1s"}))
		})
		t.Run("a subscribe racing publishes", func(t *testing.T) {
			t.Parallel()
			env := s.env("recovery-race", nil)
			testRecoveryRace(t, start(t, env), env)
		})
	})
}

// recoverySeq numbers the recovery tests' own topics and markers, so that
// stacks and subtests running at once never share one.
var recoverySeq atomic.Int64

// recoveryDial connects and learns the connection's id from a topic of its
// own.
func recoveryDial(t *testing.T, e *e2e) *reader {
	t.Helper()
	c := dialReader(t, e)
	own := fmt.Sprintf("me-%d", recoverySeq.Add(1))
	c.send(t, fmt.Sprintf(`{"action":"subscribe","topics":[%q]}`, own))
	if f, _ := c.answer(t); f.Type != "subscribed" {
		t.Fatalf("answer %s, want subscribed", f.raw)
	}
	c.id = e.soleSubscriber(t, own)
	return c
}

// answer reads up to the answer to a subscribe (subscribed or error) and
// returns it with the messages that came before it.
func (r *reader) answer(t *testing.T) (frame, []frame) {
	t.Helper()
	var before []frame
	// One wait for the answer as a whole: messages that keep coming must
	// not stretch it, or a lost answer would keep a test reading for ever.
	deadline := time.Now().Add(eventually)
	for {
		f, ok := r.next(t)
		switch {
		case !ok:
			t.Fatal("the connection ended before the answer")
		case f.Type == "message":
			if time.Now().After(deadline) {
				t.Fatalf("no answer within the wait, only %d messages", len(before)+1)
			}
			before = append(before, f)
		default:
			return f, before
		}
	}
}

// messagesUntil reads message frames of topic until the one whose data is
// marker, and returns those before it, the frames before the answer
// included.
func (r *reader) messagesUntil(t *testing.T, pending []frame, topic, marker string) []frame {
	t.Helper()
	var got []frame
	for _, f := range pending {
		if f.Topic == topic {
			got = append(got, f)
		}
	}
	for {
		f, ok := r.next(t)
		if !ok {
			t.Fatal("the connection ended before the marker")
		}
		if f.Type != "message" {
			t.Fatalf("unexpected frame %s", f.raw)
		}
		if f.Topic != topic {
			continue
		}
		var data string
		if json.Unmarshal(f.Data, &data) == nil && data == marker {
			return got
		}
		got = append(got, f)
	}
}

// closeServerSide ends the connection as API Gateway's 2-hour close does:
// through the management API's DELETE @connections, by the real client.
func closeServerSide(t *testing.T, e *e2e, c *reader) {
	t.Helper()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	if err := apigw.New(cfg, "http://"+e.stack.WSAddr).DeleteConnection(ctx, c.id); err != nil {
		t.Fatalf("DELETE @connections/%s: %v", c.id, err)
	}
}

// drain reads what reached r before its connection ended.
func (r *reader) drain(t *testing.T) []frame {
	t.Helper()
	var got []frame
	for {
		f, ok := r.next(t)
		if !ok {
			return got
		}
		got = append(got, f)
	}
}

func publishN(t *testing.T, e *e2e, topic string, n int) []*wsgatewayv1.PublishResponse {
	t.Helper()
	var out []*wsgatewayv1.PublishResponse
	for i := range n {
		res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: topic, Data: structpb.NewStringValue(fmt.Sprintf("%s-%d", topic, i))})
		if err != nil {
			t.Fatalf("Publish(%s): %v", topic, err)
		}
		out = append(out, res)
	}
	return out
}

func recoverFrame(topic, epoch string, offset uint64) string {
	return fmt.Sprintf(`{"action":"subscribe","topics":[%q],"recover":{%q:{"epoch":%q,"offset":%d}}}`, topic, topic, epoch, offset)
}

// wantNothingReplayed publishes a marker to topic and checks that it is
// the first message of topic c gets, the ones before the answer included.
func wantNothingReplayed(t *testing.T, e *e2e, c *reader, before []frame, topic string) {
	t.Helper()
	marker := fmt.Sprintf("marker-%d", recoverySeq.Add(1))
	if _, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: topic, Data: structpb.NewStringValue(marker)}); err != nil {
		t.Fatal(err)
	}
	if got := c.messagesUntil(t, before, topic, marker); len(got) != 0 {
		t.Errorf("replayed %d messages, want none: first %s", len(got), got[0].raw)
	}
}

func testRecoveryReplays(t *testing.T, e *e2e) {
	const topic = "rec"
	a := recoveryDial(t, e)
	a.send(t, fmt.Sprintf(`{"action":"subscribe","topics":[%q]}`, topic))
	f, _ := a.answer(t)
	start := f.Positions[topic]
	if f.Type != "subscribed" || start.Epoch == "" || start.Offset != 0 || f.Recovered != nil {
		t.Fatalf("answer %s, want subscribed at offset 0 of an epoch, no recovered", f.raw)
	}
	seen := publishN(t, e, topic, 3)
	for i, res := range seen {
		m, _ := a.next(t)
		if m.Type != "message" || m.ID != res.MessageId || m.Offset != uint64(i+1) || m.Epoch != start.Epoch {
			t.Fatalf("frame %s, want message %s at %s/%d", m.raw, res.MessageId, start.Epoch, i+1)
		}
	}

	closeServerSide(t, e, a)
	if rest := a.drain(t); len(rest) != 0 {
		t.Fatalf("after the close: %d more frames, first %s", len(rest), rest[0].raw)
	}
	const k = 5
	missed := publishN(t, e, topic, k) // RECOVERY_MAX_MESSAGES is 5: exactly what one recovery replays
	for _, res := range missed {
		if res.Delivered != 0 || res.Epoch != start.Epoch {
			t.Fatalf("publish while away = %v, want delivered to nobody in epoch %s", res, start.Epoch)
		}
	}

	b := recoveryDial(t, e)
	b.send(t, recoverFrame(topic, start.Epoch, 3))
	f, before := b.answer(t)
	if f.Type != "subscribed" || !f.Recovered[topic] || len(f.Recovered) != 1 {
		t.Fatalf("answer %s, want subscribed with %s recovered", f.raw, topic)
	}
	if p := f.Positions[topic]; p.Epoch != start.Epoch || p.Offset != 3+k {
		t.Errorf("positions %s, want %s/%d", f.raw, start.Epoch, 3+k)
	}
	marker := "after-recovery"
	if _, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: topic, Data: structpb.NewStringValue(marker)}); err != nil {
		t.Fatal(err)
	}
	got := b.messagesUntil(t, before, topic, marker)
	if len(got) != k {
		t.Fatalf("recovered %d messages, want %d", len(got), k)
	}
	for i, res := range missed {
		m := got[i]
		var data string
		json.Unmarshal(m.Data, &data)
		if m.ID != res.MessageId || m.Offset != res.Offset || m.Offset != uint64(4+i) || m.Epoch != res.Epoch || data != fmt.Sprintf("%s-%d", topic, i) {
			t.Errorf("recovered frame %d = %s, want message %s at %s/%d", i, m.raw, res.MessageId, res.Epoch, res.Offset)
		}
	}

	t.Run("another epoch", func(t *testing.T) {
		c := recoveryDial(t, e)
		c.send(t, recoverFrame(topic, "0123456789abcdef", 3))
		f, before := c.answer(t)
		if f.Type != "subscribed" || f.Recovered[topic] || len(f.Recovered) != 1 {
			t.Fatalf("answer %s, want %s not recovered", f.raw, topic)
		}
		wantNothingReplayed(t, e, c, before, topic)
	})

	t.Run("more missed than RECOVERY_MAX_MESSAGES", func(t *testing.T) {
		const many = "rec-many"
		res := publishN(t, e, many, 6)
		c := recoveryDial(t, e)
		c.send(t, recoverFrame(many, res[0].Epoch, 0))
		f, before := c.answer(t)
		if f.Type != "subscribed" || f.Recovered[many] || f.Positions[many].Offset != 6 {
			t.Fatalf("answer %s, want %s not recovered, at offset 6", f.raw, many)
		}
		wantNothingReplayed(t, e, c, before, many)
	})

	t.Run("a bad recover is refused and the connection stays open", func(t *testing.T) {
		const bad = "rec-bad"
		c := recoveryDial(t, e)
		for _, tc := range []struct{ frame, names string }{
			{`{"action":"subscribe","topics":["rec-bad"],"recover":{"rec-bad":{"epoch":"E","offset":-1}}}`, `recover["rec-bad"].offset`},
			{`{"action":"subscribe","topics":["rec-bad"],"recover":{"rec-bad":{"epoch":"E","offset":9007199254740993}}}`, `recover["rec-bad"].offset`},
			{`{"action":"subscribe","topics":["rec-bad"],"recover":{"other":{"epoch":"E","offset":1}}}`, `recover["other"]`},
			{`{"action":"subscribe","topics":["rec-bad"],"recover":[1]}`, `"recover"`},
		} {
			c.send(t, tc.frame)
			f, _ := c.answer(t)
			if f.Type != "error" || f.Code != "bad_request" || !strings.Contains(f.Message, tc.names) {
				t.Errorf("%s → %s, want a bad_request naming %s", tc.frame, f.raw, tc.names)
			}
		}
		if subs := e.subscribers(t, bad); len(subs) != 0 {
			t.Errorf("subscribers of %s = %v after refused subscribes", bad, subs)
		}
		c.send(t, `{"action":"ping"}`)
		if f, _ := c.answer(t); f.Type != "pong" {
			t.Errorf("ping after the refusals → %s, want pong", f.raw)
		}
	})
}

// With HISTORY_TTL=1s a client back within the second recovers and one
// back later is told to resync: the same request, only the time differs.
func testRecoveryExpired(t *testing.T, e *e2e) {
	const ttl = time.Second // the stack's HISTORY_TTL
	const tries = 5
	var topic, epoch string
	var published time.Time // by when every message was retained
	for try := 1; ; try++ {
		// A topic per try: a slow try's messages may have expired.
		topic = fmt.Sprintf("rec-expiry-%d", try)
		begin := time.Now()
		res := publishN(t, e, topic, 2)
		published, epoch = time.Now(), res[0].Epoch
		c := recoveryDial(t, e)
		c.send(t, recoverFrame(topic, epoch, 0))
		f, before := c.answer(t)
		took := time.Since(begin)
		if f.Type == "subscribed" && f.Recovered[topic] && len(before) == 2 {
			break
		}
		// The messages were retained after begin, so an answer within
		// the TTL of it had both to replay. A later one may rightly find
		// them gone (a machine too busy to publish, connect and subscribe
		// within the second): then the try says nothing, and is made
		// again.
		if took < ttl || f.Type != "subscribed" || f.Recovered[topic] || try == tries {
			t.Fatalf("answer %s after %d replayed, %v after the first publish (try %d of %d): want %s recovered with both messages, the history is kept %v",
				f.raw, len(before), took, try, tries, topic, ttl)
		}
		t.Logf("try %d: answered %v after the first publish, past the TTL; trying again", try, took)
	}
	// Expiry is kept in whole seconds, rounded up, and a message is kept
	// while the clock's second is before it: from the first whole second
	// at or after published+ttl on, every message is past it for sure.
	// That is ttl and half a second on average after the last one was
	// retained, where ttl and a second had to be waited out before.
	expired := published.Add(ttl).Truncate(time.Second)
	if expired.Before(published.Add(ttl)) {
		expired = expired.Add(time.Second)
	}
	time.Sleep(time.Until(expired.Add(100 * time.Millisecond)))
	d := recoveryDial(t, e)
	d.send(t, recoverFrame(topic, epoch, 0))
	f, before := d.answer(t)
	if f.Type != "subscribed" || f.Recovered[topic] || f.Positions[topic].Epoch != epoch {
		t.Fatalf("answer %s, want %s not recovered, in the same epoch", f.raw, topic)
	}
	wantNothingReplayed(t, e, d, before, topic)
}

// Publishers publish without pause while a browser is cut off and comes
// back again and again, each time recovering from the last offset up to
// which it had seen every message: over the whole run it sees every
// offset, whatever the order of the subscribe and the publishes.
//
// Each connection is held to what its subscribe promises, not only the
// run to its total, since the next recovery heals what one connection
// missed: a recovered subscribe replays every offset after the client's up
// to the position it answers, before the answer, and every publish past
// that position which answered while the connection was open reached it
// live. So a fan-out that read its recipients before taking its position,
// or a subscribe that stored the subscription only after replaying, fails
// the round it happens in, where at the end of the run alone it mostly
// went unseen; and a recovery that answered not recovered on finding a
// message still being retained fails within a few rounds, with one
// publisher slow to retain. That is what makes sixteen rounds enough.
func testRecoveryRace(t *testing.T, e *e2e, env map[string]string) {
	const topic = "rec-race"
	// One publisher is a second service whose messages reach the history
	// a little after their positions are taken, as a slow store call
	// does: a recovering subscribe often finds the hole such a publish
	// leaves, and must wait for it rather than answer not recovered.
	lagging := secondPublisherOver(t, e, env, func(s ratedStore) ratedStore { return laggingRetain{s, retainLag} })
	var mu sync.Mutex
	published := map[uint64]string{} // offset → message id
	var epoch atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p, c := range []wsgatewayv1.PublisherServiceClient{e.grpc, lagging} {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res, err := c.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: topic, Data: structpb.NewStringValue(fmt.Sprintf("p%d-%d", p, i))})
				if err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
				epoch.CompareAndSwap(nil, res.Epoch)
				mu.Lock()
				published[res.Offset] = res.MessageId
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	seen := map[uint64]string{} // offset → message id
	var ep string
	var first, last uint64 // the position of the first subscribe; the last offset up to which every one was seen
	record := func(frames []frame) {
		for _, f := range frames {
			if f.Type != "message" || f.Topic != topic {
				continue
			}
			if ep != "" && f.Epoch != ep {
				t.Fatalf("frame %s of another epoch than %s", f.raw, ep)
			}
			if id, ok := seen[f.Offset]; ok && id != f.ID {
				t.Fatalf("offset %d came as %s and as %s", f.Offset, id, f.ID)
			}
			seen[f.Offset] = f.ID
		}
		for seen[last+1] != "" {
			last++
		}
	}
	// offsets are those of topic among frames.
	offsets := func(frames []frame) map[uint64]bool {
		out := map[uint64]bool{}
		for _, f := range frames {
			if f.Type == "message" && f.Topic == topic {
				out[f.Offset] = true
			}
		}
		return out
	}
	const rounds = 16
	var c *reader
	for round := range rounds {
		c = recoveryDial(t, e)
		from := last
		if round == 0 {
			c.send(t, fmt.Sprintf(`{"action":"subscribe","topics":[%q]}`, topic))
		} else {
			c.send(t, recoverFrame(topic, ep, from))
		}
		f, before := c.answer(t)
		if f.Type != "subscribed" || (round > 0 && !f.Recovered[topic]) {
			t.Fatalf("round %d: answer %s, want subscribed, recovered", round, f.raw)
		}
		at := f.Positions[topic].Offset
		if round == 0 {
			// It starts from here: what was published before is not
			// its to see.
			ep, first = f.Positions[topic].Epoch, at
			last = first
		} else {
			replayed := offsets(before)
			for o := from + 1; o <= at; o++ {
				if !replayed[o] {
					t.Fatalf("round %d: recovered from %d up to %d, but offset %d came not before the answer", round, from, at, o)
				}
			}
		}
		record(before)
		if round == rounds-1 {
			break
		}
		time.Sleep(time.Duration(round%5) * 5 * time.Millisecond) // connected for a while, or hardly
		mu.Lock()
		var answered []uint64 // past the subscribe's position, answered while c was connected
		for o := range published {
			if o > at {
				answered = append(answered, o)
			}
		}
		mu.Unlock()
		closeServerSide(t, e, c)
		rest := c.drain(t)
		record(rest)
		got := offsets(append(before, rest...))
		for _, o := range answered {
			if !got[o] {
				t.Fatalf("round %d: offset %d, past the position %d the subscribe answered, was published while connected but never came", round, o, at)
			}
		}
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	want := maps.Clone(published)
	mu.Unlock()
	end := slices.Max(slices.Collect(maps.Keys(want)))
	if ep != epoch.Load() {
		t.Fatalf("subscribed in epoch %s, published in %v", ep, epoch.Load())
	}
	// The last connection is still open: the rest arrive on it.
	deadline := time.After(eventually)
	for last < end {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatalf("the last connection ended at offset %d of %d", last, end)
			}
			record([]frame{f})
		case <-deadline:
			t.Fatalf("offsets up to %d arrived, then none: %d published", last, end)
		}
	}
	for off, id := range want {
		if off > first && seen[off] != id {
			t.Errorf("offset %d: saw %q, published %s", off, seen[off], id)
		}
	}
	if end-first < 2*rounds {
		t.Errorf("only %d publishes raced %d subscribes", end-first, rounds)
	}
}

// retainLag is how long laggingRetain holds a message back from the
// history: long beside the moment between a recovering subscribe's reading
// of the position and of the history, well inside the time it waits for a
// hole to fill.
const retainLag = 10 * time.Millisecond

// laggingRetain is a store whose Retain starts lag late.
type laggingRetain struct {
	ratedStore
	lag time.Duration
}

func (s laggingRetain) Retain(ctx context.Context, topic string, pos store.Position, r store.Retained, ttl time.Duration) error {
	time.Sleep(s.lag)
	return s.ratedStore.Retain(ctx, topic, pos, r, ttl)
}
