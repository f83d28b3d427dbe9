package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/assembly"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// lookupPublishes is how many publishes, to as many topics, the lookup
// cost is averaged over; lookupMissed how many messages the recovering
// subscribe missed.
const (
	lookupPublishes = 20
	lookupMissed    = 10
)

// lookupData is each publish's data: about 200 bytes, so its envelope (the
// history item) stays within the first write unit (1 KB), as a typical
// message's does.
var lookupData = json.RawMessage(`{"order":"o-000123","status":"shipped","carrier":"bench","eta":"2026-12-03T10:00:00Z","note":"a message of about two hundred bytes, a typical notification"}`)

// runLookup is what a publish and a recovering subscribe cost in DynamoDB
// (dynalite here), asked of DynamoDB as it would bill it: C connections,
// each subscribed to one of T topics, written through the store as the
// handlers write them; then wsgateway as internal/assembly builds it over
// that table, with HISTORY_TTL at its default and a poster that does
// nothing. Its fan-out publishes for real: the store reports what a
// position (NextPosition) and the history (Retain) cost
// (store.WithConsumedCapacity), and every DynamoDB call's consumed
// capacity is added up by operation, with the items its Query read.
// Then the same with idempotency keys, and a subscribe frame that recovers
// lookupMissed messages, through the assembly's own subscribe route.
func runLookup(ctx context.Context, cfg options) ([]row, error) {
	endpoint, stop, err := startDynalite()
	if err != nil {
		return nil, err
	}
	defer stop()
	const table = "wsgateway-bench"
	settings, err := config.Load(func(name string) string {
		return map[string]string{"DYNAMODB_ENDPOINT": endpoint, "TABLE_NAME": table}[name]
	})
	if err != nil {
		return nil, err
	}
	// The store is the assembly's, but for what it is told to report: the
	// capacity of every call (calls) and of a publish's writes (writes).
	awsCfg, err := settings.AWS(ctx, true)
	if err != nil {
		return nil, err
	}
	var calls capacityCounter
	var writes writeCounter
	awsCfg.APIOptions = append(awsCfg.APIOptions, calls.middleware)
	client := store.NewDynamoDBClient(awsCfg, settings.DynamoDBEndpoint)
	if err := store.EnsureTable(ctx, client, settings.TableName); err != nil {
		return nil, err
	}
	st := store.NewDynamoDB(client, settings.TableName, store.WithConsumedCapacity(writes.add))
	gw, err := assembly.New(ctx, settings, assembly.Options{
		Log: slog.New(slog.DiscardHandler), Store: st, LocalCredentials: true,
		NewPoster: func(aws.Config, string) fanout.Poster { return nopPoster{} },
	})
	if err != nil {
		return nil, err
	}
	topic := func(i int) string { return fmt.Sprint("topic-", i%cfg.lookupTopics) }

	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range cfg.lookupConns {
		g.Go(func() error {
			id := fmt.Sprintf("conn-%06d=", i)
			if err := st.PutConnection(gctx, store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
				return err
			}
			return st.Subscribe(gctx, id, "", []string{topic(i)})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	progress("lookup: %d connections and their subscriptions written in %v", cfg.lookupConns, time.Since(start).Round(time.Second))

	perTopic := cfg.lookupConns / cfg.lookupTopics
	publishes := min(cfg.lookupTopics, lookupPublishes)
	// publishAll publishes once to each of the first publishes topics,
	// with a key of its own when keyed, and returns what it cost.
	publishAll := func(keyed bool) (capacity, map[string]float64, time.Duration, error) {
		calls.reset()
		writes.reset()
		start := time.Now()
		for i := range publishes {
			m := fanout.Message{Topic: topic(i), Data: lookupData}
			if keyed {
				m.IdempotencyKey = fmt.Sprint("bench-key-", i)
			}
			res, err := gw.Fanout.Publish(ctx, m)
			if err != nil {
				return capacity{}, nil, 0, err
			}
			if res.Delivered != perTopic {
				return capacity{}, nil, 0, fmt.Errorf("publish to %s reached %d subscribers, want %d", topic(i), res.Delivered, perTopic)
			}
		}
		return calls.take(), writes.take(), time.Since(start), nil
	}
	plain, plainWrites, elapsed, err := publishAll(false)
	if err != nil {
		return nil, err
	}
	keyed, _, _, err := publishAll(true)
	if err != nil {
		return nil, err
	}
	subscribing, recovering, err := subscribeCost(ctx, gw, st, &calls)
	if err != nil {
		return nil, err
	}

	n := float64(publishes)
	query := plain.ops["Query"]
	pos, kept := plainWrites["NextPosition"]/n, plainWrites["Retain"]/n
	keyCost := keyed.sum() - plain.sum()
	return []row{
		{"lookup", fmt.Sprintf("C=%d, T=%d", cfg.lookupConns, cfg.lookupTopics),
			fmt.Sprintf("%.0f items, %.1f RCU per publish", float64(plain.scanned)/n, query.units/n),
			fmt.Sprintf("%.1f Query of %d DynamoDB calls, %v each (dynalite's time)", float64(query.calls)/n, plain.calls()/publishes, (elapsed / time.Duration(max(1, plain.calls()))).Round(10*time.Microsecond)),
			fmt.Sprintf("items = the topic's %d", perTopic)},
		{"lookup", "positions + history, per publish",
			fmt.Sprintf("%.1f WCU: NextPosition %.1f + Retain %.1f", pos+kept, pos, kept),
			fmt.Sprintf("with the Query: %.1f units, %s", plain.sum()/n, plain.perCall(n)), ""},
		{"lookup", "idempotency key, per keyed publish",
			fmt.Sprintf("+%.1f WCU", keyCost/n),
			fmt.Sprintf("keyed publish %.1f units, %s", keyed.sum()/n, keyed.perCall(n)), ""},
		{"lookup", fmt.Sprintf("recovering subscribe, 1 topic, %d missed", lookupMissed),
			fmt.Sprintf("%.1f RCU + %.1f WCU", recovering.reads(), recovering.writes()),
			fmt.Sprintf("+%.1f RCU over a subscribe (%.1f RCU + %.1f WCU: %s); %s", recovering.reads()-subscribing.reads(),
				subscribing.reads(), subscribing.writes(), subscribing.perCall(1), recovering.perCall(1)), ""},
	}, nil
}

// subscribeCost is what a subscribe frame to one topic costs, through the
// assembly's subscribe route, without recover and with one that recovers
// lookupMissed messages: the messages are published, then one connection
// subscribes and another subscribes from the position before them. Both
// find the topic's counter live, as a subscribe to a topic in use does
// (the first subscribe to a new topic also writes its counter).
func subscribeCost(ctx context.Context, gw *assembly.Gateway, st store.Store, calls *capacityCounter) (plain, recovering capacity, err error) {
	const topic = "lookup-recover"
	subscribe := func(id string, frame map[string]any) (capacity, string, error) {
		if err := st.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
			return capacity{}, "", err
		}
		body, err := json.Marshal(frame)
		if err != nil {
			return capacity{}, "", err
		}
		calls.reset()
		resp, err := gw.Routes().Subscribe(ctx, events.APIGatewayWebsocketProxyRequest{
			RequestContext: events.APIGatewayWebsocketProxyRequestContext{ConnectionID: id, RouteKey: "subscribe"},
			Body:           string(body),
		})
		return calls.take(), resp.Body, err
	}
	var before store.Position
	for i := range lookupMissed {
		res, err := gw.Fanout.Publish(ctx, fanout.Message{Topic: topic, Data: lookupData})
		if err != nil {
			return plain, recovering, err
		}
		if i == 0 {
			before = store.Position{Epoch: res.Position.Epoch, Offset: res.Position.Offset - 1}
		}
	}
	plain, answer, err := subscribe("bench-subscriber=", map[string]any{"action": "subscribe", "topics": []string{topic}})
	if err != nil {
		return plain, recovering, err
	}
	if !strings.HasPrefix(answer, `{"type":"subscribed"`) {
		return plain, recovering, fmt.Errorf("subscribe answered %s", answer)
	}
	recovering, answer, err = subscribe("bench-recovering=", map[string]any{"action": "subscribe", "topics": []string{topic},
		"recover": map[string]any{topic: map[string]any{"epoch": before.Epoch, "offset": before.Offset}}})
	if err != nil {
		return plain, recovering, err
	}
	if want := fmt.Sprintf(`"recovered":{%q:true}`, topic); !strings.Contains(answer, want) {
		return plain, recovering, fmt.Errorf("recovering subscribe answered %s, want %s in it", answer, want)
	}
	return plain, recovering, nil
}

type nopPoster struct{}

func (nopPoster) PostToConnection(context.Context, string, []byte) error { return nil }

// capacityCounter asks DynamoDB for the capacity every call consumes and
// adds it up by operation, with the items its Queries read: what DynamoDB
// bills.
type capacityCounter struct {
	mu sync.Mutex
	c  capacity
}

// capacity is what calls consumed, by operation (Query, PutItem, …).
type capacity struct {
	ops     map[string]opCost
	scanned int
}

type opCost struct {
	calls int
	units float64
}

func (c capacity) sum() float64 {
	var s float64
	for _, o := range c.ops {
		s += o.units
	}
	return s
}

// reads and writes are the read and the write units.
func (c capacity) reads() float64 {
	return c.ops["Query"].units + c.ops["GetItem"].units + c.ops["BatchGetItem"].units
}

func (c capacity) writes() float64 { return c.sum() - c.reads() }

func (c capacity) calls() int {
	n := 0
	for _, o := range c.ops {
		n += o.calls
	}
	return n
}

// perCall lists the operations, each with its calls and units per n.
func (c capacity) perCall(n float64) string {
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(c.ops)) {
		o := c.ops[op]
		parts = append(parts, fmt.Sprintf("%s %g×%.1f", op, float64(o.calls)/n, o.units/float64(max(1, o.calls))))
	}
	return strings.Join(parts, " + ")
}

func (c *capacityCounter) middleware(s *middleware.Stack) error {
	return s.Initialize.Add(middleware.InitializeMiddlewareFunc("BenchCapacity", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		total := types.ReturnConsumedCapacityTotal
		switch p := in.Parameters.(type) {
		case *dynamodb.QueryInput:
			p.ReturnConsumedCapacity = total
		case *dynamodb.GetItemInput:
			p.ReturnConsumedCapacity = total
		case *dynamodb.PutItemInput:
			p.ReturnConsumedCapacity = total
		case *dynamodb.UpdateItemInput:
			p.ReturnConsumedCapacity = total
		case *dynamodb.DeleteItemInput:
			p.ReturnConsumedCapacity = total
		case *dynamodb.BatchWriteItemInput:
			p.ReturnConsumedCapacity = total
		case *dynamodb.BatchGetItemInput:
			p.ReturnConsumedCapacity = total
		}
		out, md, err := next.HandleInitialize(ctx, in)
		var cc []types.ConsumedCapacity
		scanned := int32(0)
		switch o := out.Result.(type) {
		case *dynamodb.QueryOutput:
			cc, scanned = ptrs(o.ConsumedCapacity), o.ScannedCount
		case *dynamodb.GetItemOutput:
			cc = ptrs(o.ConsumedCapacity)
		case *dynamodb.PutItemOutput:
			cc = ptrs(o.ConsumedCapacity)
		case *dynamodb.UpdateItemOutput:
			cc = ptrs(o.ConsumedCapacity)
		case *dynamodb.DeleteItemOutput:
			cc = ptrs(o.ConsumedCapacity)
		case *dynamodb.BatchWriteItemOutput:
			cc = o.ConsumedCapacity
		case *dynamodb.BatchGetItemOutput:
			cc = o.ConsumedCapacity
		default:
			return out, md, err
		}
		c.add(middleware.GetOperationName(ctx), scanned, cc)
		return out, md, err
	}), middleware.After)
}

func ptrs(c *types.ConsumedCapacity) []types.ConsumedCapacity {
	if c == nil {
		return nil
	}
	return []types.ConsumedCapacity{*c}
}

func (c *capacityCounter) add(op string, scanned int32, cc []types.ConsumedCapacity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c.ops == nil {
		c.c.ops = map[string]opCost{}
	}
	o := c.c.ops[op]
	o.calls++
	for _, u := range cc {
		o.units += aws.ToFloat64(u.CapacityUnits)
	}
	c.c.ops[op] = o
	c.c.scanned += int(scanned)
}

func (c *capacityCounter) reset() { c.take() }

// take returns what was counted since the last take, and forgets it.
func (c *capacityCounter) take() capacity {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.c
	c.c = capacity{}
	return got
}

// writeCounter adds up what store.WithConsumedCapacity reports, by the
// store's method.
type writeCounter struct {
	mu    sync.Mutex
	units map[string]float64
}

func (w *writeCounter) add(operation string, units float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.units == nil {
		w.units = map[string]float64{}
	}
	w.units[operation] += units
}

func (w *writeCounter) reset() { w.take() }

func (w *writeCounter) take() map[string]float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.units
	w.units = nil
	if got == nil {
		got = map[string]float64{}
	}
	return got
}

// startDynalite starts a dynalite with internal/dynalite's launcher, the
// tests' own (a process group, a proxy in front), and returns its endpoint
// and what stops it.
func startDynalite() (endpoint string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "wsgateway-bench-dynalite-")
	if err != nil {
		return "", nil, err
	}
	tb := &dynaliteTB{dir: dir}
	stop = func() {
		for _, f := range slices.Backward(tb.cleanups) {
			f()
		}
		os.RemoveAll(dir)
	}
	defer func() {
		if r := recover(); r != nil {
			failed, ok := r.(dynaliteFailed)
			if !ok {
				panic(r)
			}
			stop()
			endpoint, stop, err = "", nil, failed.err
		}
	}()
	return dynalite.Start(tb).Endpoint(), stop, nil
}

// dynaliteTB is what the launcher, written for tests, needs of a
// testing.TB, outside a test: a directory, cleanups kept for stop, and a
// Fatalf that panics with a dynaliteFailed for startDynalite to recover.
// The embedded TB is nil: the launcher calls only the methods below.
type dynaliteTB struct {
	testing.TB
	dir      string
	cleanups []func()
}

type dynaliteFailed struct{ err error }

func (t *dynaliteTB) Helper()          {}
func (t *dynaliteTB) TempDir() string  { return t.dir }
func (t *dynaliteTB) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *dynaliteTB) Fatalf(format string, args ...any) {
	panic(dynaliteFailed{fmt.Errorf(format, args...)})
}
