package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// LookupResult is scenario 5: what finding a topic's subscribers costs in
// DynamoDB, per publish, for the product (a Query of the topic's
// partition) and for the seed (a Scan of every connection).
type LookupResult struct {
	Connections int      `json:"connections"`
	Topics      int      `json:"topics"`
	Publishes   int      `json:"publishes"`
	Ours        ReadCost `json:"ours"`
	Seed        ReadCost `json:"seed"`
}

// ReadCost is the reads of one publish, averaged over the publishes.
type ReadCost struct {
	Calls         float64 `json:"calls"`
	ItemsRead     float64 `json:"items_read"`     // evaluated (ScannedCount), what DynamoDB charges for
	ItemsReturned float64 `json:"items_returned"` // Count
	Capacity      float64 `json:"read_capacity_units"`
	// Time is dynalite's, on this machine: only the ratio means much.
	Time Millis `json:"time_ms"`
}

const (
	lookupTable = "wsgateway-bench"
	seedTable   = "seed-connections"
)

// runLookup is scenario 5, against dynalite: C connections, each
// subscribed to one of T topics, in the product's table; the same
// connections in a table laid out as the seed's (one item per connection).
func runLookup(ctx context.Context, cfg Config) (LookupResult, error) {
	r := LookupResult{Connections: cfg.LookupConnections, Topics: cfg.LookupTopics, Publishes: min(cfg.LookupTopics, 20)}
	db, endpoint, err := startDynalite()
	if err != nil {
		return r, err
	}
	defer db.stop()

	var reads readCounter
	awsCfg := cfg.aws.Copy()
	awsCfg.APIOptions = append(awsCfg.APIOptions, reads.middleware)
	client := store.NewDynamoDBClient(awsCfg, endpoint)
	if err := store.EnsureTable(ctx, client, lookupTable); err != nil {
		return r, err
	}
	st := store.NewDynamoDB(client, lookupTable)
	topic := func(i int) string { return fmt.Sprint("topic-", i%cfg.LookupTopics) }
	conn := func(i int) string { return fmt.Sprintf("conn-%06d=", i) }

	// The product's table, written the way the handlers write it: a
	// connection item and a subscription item per connection.
	start := time.Now()
	err = forEach(ctx, cfg.LookupConnections, 32, func(ctx context.Context, i int) error {
		if err := st.PutConnection(ctx, store.Connection{ID: conn(i), ConnectedAt: time.Now()}); err != nil {
			return err
		}
		return st.Subscribe(ctx, conn(i), []string{topic(i)})
	})
	if err != nil {
		return r, fmt.Errorf("subscribe: %w", err)
	}
	if err := writeSeedTable(ctx, client, cfg.LookupConnections, conn, topic); err != nil {
		return r, err
	}
	cfg.progress("lookup: %d connections and their subscriptions, and the seed's table, written in %v", cfg.LookupConnections, time.Since(start).Round(time.Second))

	// Ours: a real publish, through the fan-out, to a poster that does
	// nothing; what it reads is what DynamoDB bills.
	f := fanout.New(st, nopPoster{}, fanout.Options{Logger: slog.New(slog.DiscardHandler)})
	reads.reset()
	start = time.Now()
	for i := range r.Publishes {
		res, err := f.Publish(ctx, fanout.Message{Topic: topic(i), Data: json.RawMessage(`{}`)})
		if err != nil {
			return r, err
		}
		if want := cfg.LookupConnections / cfg.LookupTopics; res.Delivered != want {
			return r, fmt.Errorf("publish to %s reached %d subscribers, want %d", topic(i), res.Delivered, want)
		}
	}
	r.Ours = reads.per(r.Publishes, time.Since(start))

	// The seed's: a Scan of every connection, filtered on the topic.
	reads.reset()
	start = time.Now()
	for i := range r.Publishes {
		n, err := scanSeed(ctx, client, topic(i))
		if err != nil {
			return r, err
		}
		if want := cfg.LookupConnections / cfg.LookupTopics; n != want {
			return r, fmt.Errorf("seed scan for %s found %d connections, want %d", topic(i), n, want)
		}
	}
	r.Seed = reads.per(r.Publishes, time.Since(start))
	cfg.progress("lookup: per publish, ours reads %.0f items (%.1f RCU), the seed's Scan %.0f (%.1f RCU)", r.Ours.ItemsRead, r.Ours.Capacity, r.Seed.ItemsRead, r.Seed.Capacity)
	return r, nil
}

type nopPoster struct{}

func (nopPoster) PostToConnection(context.Context, string, []byte) error { return nil }

// writeSeedTable creates the seed's table, one item per connection, and
// fills it with BatchWriteItem.
func writeSeedTable(ctx context.Context, client *dynamodb.Client, n int, conn, topic func(int) string) error {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(seedTable),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("connectionId"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("connectionId"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", seedTable, err)
	}
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 50 * time.Millisecond })
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(seedTable)}, 30*time.Second); err != nil {
		return fmt.Errorf("create %s: %w", seedTable, err)
	}
	const batch = 25 // BatchWriteItem's limit
	return forEach(ctx, (n+batch-1)/batch, 8, func(ctx context.Context, b int) error {
		var writes []types.WriteRequest
		for i := b * batch; i < min(n, (b+1)*batch); i++ {
			writes = append(writes, types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{
				"connectionId": &types.AttributeValueMemberS{Value: conn(i)},
				"topic":        &types.AttributeValueMemberS{Value: topic(i)},
				"connectedAt":  &types.AttributeValueMemberS{Value: time.Now().UTC().Format(time.RFC3339)},
			}}})
		}
		for len(writes) > 0 {
			out, err := client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{seedTable: writes}})
			if err != nil {
				return err
			}
			writes = out.UnprocessedItems[seedTable]
		}
		return nil
	})
}

// scanSeed is the seed's lookup: every item of the table read, the
// topic's kept.
func scanSeed(ctx context.Context, client *dynamodb.Client, topic string) (int, error) {
	p := dynamodb.NewScanPaginator(client, &dynamodb.ScanInput{
		TableName:                 aws.String(seedTable),
		FilterExpression:          aws.String("topic = :t"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberS{Value: topic}},
	})
	n := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return n, err
		}
		n += len(out.Items)
	}
	return n, nil
}

// readCounter asks DynamoDB for the capacity of every Query and Scan and
// adds it up, with the items they evaluated and returned.
type readCounter struct {
	mu                      sync.Mutex
	calls, scanned, counted int
	units                   float64
}

func (c *readCounter) middleware(s *middleware.Stack) error {
	return s.Initialize.Add(middleware.InitializeMiddlewareFunc("BenchReadCost", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		switch p := in.Parameters.(type) {
		case *dynamodb.QueryInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		case *dynamodb.ScanInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		}
		out, md, err := next.HandleInitialize(ctx, in)
		if err != nil {
			return out, md, err
		}
		switch o := out.Result.(type) {
		case *dynamodb.QueryOutput:
			c.add(o.ScannedCount, o.Count, o.ConsumedCapacity)
		case *dynamodb.ScanOutput:
			c.add(o.ScannedCount, o.Count, o.ConsumedCapacity)
		}
		return out, md, err
	}), middleware.After)
}

func (c *readCounter) add(scanned, counted int32, cc *types.ConsumedCapacity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.scanned += int(scanned)
	c.counted += int(counted)
	if cc != nil {
		c.units += aws.ToFloat64(cc.CapacityUnits)
	}
}

func (c *readCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls, c.scanned, c.counted, c.units = 0, 0, 0, 0
}

func (c *readCounter) per(publishes int, d time.Duration) ReadCost {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := float64(publishes)
	return ReadCost{
		Calls:         float64(c.calls) / n,
		ItemsRead:     float64(c.scanned) / n,
		ItemsReturned: float64(c.counted) / n,
		Capacity:      c.units / n,
		Time:          Millis(d / time.Duration(publishes)),
	}
}

// startDynalite runs the repository's pinned dynalite (npm ci installs
// it) on a free loopback port, in memory.
func startDynalite() (*proc, string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "", fmt.Errorf("scenario 5 needs Node.js for dynalite: %w", err)
	}
	cli, err := findUp(filepath.Join("node_modules", "dynalite", "cli.js"))
	if err != nil {
		return nil, "", fmt.Errorf("%w: run `npm ci` at the repository's root", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p, err := startProc(node, []string{cli, "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--createTableMs", "0"}, nil, nil)
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return p, "http://" + addr, nil
		}
		if time.Now().After(deadline) {
			return nil, "", errors.Join(fmt.Errorf("dynalite did not listen on %s within 15s: %w", addr, err), p.stop())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findUp looks for rel in the working directory and its parents.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found here or above", rel)
		}
		dir = parent
	}
}
