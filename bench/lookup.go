package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// lookupPublishes is how many publishes, to as many topics, the lookup
// cost is averaged over.
const lookupPublishes = 20

// runLookup is what finding a topic's subscribers costs in DynamoDB: C
// connections, each subscribed to one of T topics, written through the
// store as the handlers write them; then real publishes through the
// fan-out, to a poster that does nothing, with every read's consumed
// capacity asked of DynamoDB (dynalite here): what it would bill.
func runLookup(ctx context.Context, cfg options) ([]row, error) {
	endpoint, stop, err := startDynalite()
	if err != nil {
		return nil, err
	}
	defer stop()
	awsCfg, err := config.Config{Region: "us-east-1"}.AWS(ctx, true)
	if err != nil {
		return nil, err
	}
	var reads readCounter
	awsCfg.APIOptions = append(awsCfg.APIOptions, reads.middleware)
	client := store.NewDynamoDBClient(awsCfg, endpoint)
	const table = "wsgateway-bench"
	if err := store.EnsureTable(ctx, client, table); err != nil {
		return nil, err
	}
	st := store.NewDynamoDB(client, table)
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

	f := fanout.New(st, nopPoster{}, fanout.Options{Logger: slog.New(slog.DiscardHandler)})
	perTopic := cfg.lookupConns / cfg.lookupTopics
	publishes := min(cfg.lookupTopics, lookupPublishes)
	reads.reset()
	start = time.Now()
	for i := range publishes {
		res, err := f.Publish(ctx, fanout.Message{Topic: topic(i), Data: json.RawMessage(`{}`)})
		if err != nil {
			return nil, err
		}
		if res.Delivered != perTopic {
			return nil, fmt.Errorf("publish to %s reached %d subscribers, want %d", topic(i), res.Delivered, perTopic)
		}
	}
	elapsed := time.Since(start)
	n := float64(publishes)
	return []row{{"lookup", fmt.Sprintf("C=%d, T=%d", cfg.lookupConns, cfg.lookupTopics),
		fmt.Sprintf("%.0f items, %.1f RCU per publish", float64(reads.scanned)/n, reads.units/n),
		fmt.Sprintf("%.1f reads of %v each (dynalite's time)", float64(reads.calls)/n, (elapsed / time.Duration(max(1, reads.calls))).Round(10*time.Microsecond)),
		fmt.Sprintf("items = the topic's %d", perTopic)}}, nil
}

type nopPoster struct{}

func (nopPoster) PostToConnection(context.Context, string, []byte) error { return nil }

// readCounter asks DynamoDB for the capacity every Query consumes and adds
// it up, with the items they evaluated: what DynamoDB bills.
type readCounter struct {
	mu             sync.Mutex
	calls, scanned int
	units          float64
}

func (c *readCounter) middleware(s *middleware.Stack) error {
	return s.Initialize.Add(middleware.InitializeMiddlewareFunc("BenchReadCost", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if p, ok := in.Parameters.(*dynamodb.QueryInput); ok {
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		}
		out, md, err := next.HandleInitialize(ctx, in)
		if o, ok := out.Result.(*dynamodb.QueryOutput); ok {
			c.add(o.ScannedCount, o.ConsumedCapacity)
		}
		return out, md, err
	}), middleware.After)
}

func (c *readCounter) add(scanned int32, cc *types.ConsumedCapacity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.scanned += int(scanned)
	if cc != nil {
		c.units += aws.ToFloat64(cc.CapacityUnits)
	}
}

func (c *readCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls, c.scanned, c.units = 0, 0, 0
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
