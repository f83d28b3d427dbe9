package store_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/store"
)

// callCounter counts the DynamoDB calls of the clients it is attached to,
// by operation, each call once however many attempts it takes, as
// dynalite.Recorder sees them; it keeps BatchGetItem's inputs.
type callCounter struct {
	mu        sync.Mutex
	calls     map[string]int
	batchGets []*dynamodb.BatchGetItemInput
}

func (c *callCounter) APIOption(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("callCounter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.calls[awsmiddleware.GetOperationName(ctx)]++
			if b, ok := in.Parameters.(*dynamodb.BatchGetItemInput); ok {
				c.batchGets = append(c.batchGets, b)
			}
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

// take returns what was counted since the last take.
func (c *callCounter) take() (map[string]int, []*dynamodb.BatchGetItemInput) {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls, gets := c.calls, c.batchGets
	c.calls, c.batchGets = map[string]int{}, nil
	return calls, gets
}

// A subscribe reads the positions of topics whose counters are live with
// at least half of keep left: one strongly consistent BatchGetItem for all
// of them, and no write. Only the others are written, each through the
// conditional update that starts, restarts or refreshes it.
func TestDynamoDBPositionsReadFreshCounters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const keep = time.Hour
	client := patientClient(dynalite.Start(t).Endpoint())
	table := newTable(t, client)
	var mu sync.Mutex
	now := time.Date(2030, time.March, 4, 5, 6, 7, 123456789, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }

	// The publishes go through a client of their own: only the
	// subscriber's calls are counted and recorded.
	publisher := store.NewDynamoDB(client, table, store.WithClock(clock))
	counter := &callCounter{calls: map[string]int{}}
	rec := dynalite.NewRecorder()
	counted := dynamodb.New(client.Options(), func(o *dynamodb.Options) {
		o.APIOptions = append(slices.Clip(o.APIOptions), counter.APIOption, rec.APIOption)
	})
	subscriber := store.NewDynamoDB(counted, table, store.WithClock(clock))
	publish := func(topic string) store.Position {
		t.Helper()
		pos, err := publisher.NextPosition(ctx, topic, keep)
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	wantCalls := func(what string, batchGets, updates, keys int) {
		t.Helper()
		calls, gets := counter.take()
		want := map[string]int{"BatchGetItem": batchGets}
		if updates > 0 {
			want["UpdateItem"] = updates
		}
		if !maps.Equal(calls, want) {
			t.Errorf("%s: calls %v, want %v", what, calls, want)
		}
		for _, in := range gets {
			req, ok := in.RequestItems[table]
			if len(in.RequestItems) != 1 || !ok || len(req.Keys) != keys || !aws.ToBool(req.ConsistentRead) {
				t.Errorf("%s: BatchGetItem of %d tables, %d keys of %s, consistent %v; want %d keys of %s, strongly consistent",
					what, len(in.RequestItems), len(req.Keys), table, aws.ToBool(req.ConsistentRead), keys, table)
			}
		}
	}

	// As many live, fresh counters as a subscribe may name.
	topics := make([]string, store.MaxPositionsTopics)
	want := map[string]store.Position{}
	for i := range topics {
		topics[i] = fmt.Sprintf("t%02d", i)
		publish(topics[i])
		want[topics[i]] = publish(topics[i])
	}
	advance(keep/2 - time.Second) // still more than half of keep left
	got, err := subscriber.Positions(ctx, topics, keep)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("Positions of %d fresh counters = %v, want %v", len(topics), got, want)
	}
	wantCalls("Positions of fresh counters", 1, 0, len(topics))
	if calls := rec.Calls(); !slices.Equal(calls, []dynalite.Call{{Operation: "BatchGetItem", Table: table}}) {
		t.Errorf("Positions of fresh counters called %+v, want BatchGetItem on %s alone", calls, table)
	}

	// One of each kind: the fresh one is read, the others written: a new
	// counter starts (1 update), an expired one restarts (its live update
	// fails, the restart succeeds: 2), an aging one is refreshed (1).
	advance(keep/2 + 2*time.Second) // t00's counter expired a second ago
	aging := publish("aging")
	advance(keep/2 + time.Second)
	fresh := publish("fresh")
	got, err = subscriber.Positions(ctx, []string{"fresh", "new", "t00", "aging"}, keep)
	if err != nil {
		t.Fatal(err)
	}
	if got["fresh"] != fresh || got["aging"] != aging || got["new"].Offset != 0 || got["new"].Epoch == "" ||
		got["t00"].Offset != 0 || got["t00"].Epoch == "" || got["t00"].Epoch == want["t00"].Epoch {
		t.Errorf("Positions(fresh, new, t00, aging) = %v; want fresh %+v, new and t00 at offset 0 of new epochs (t00's not %q), aging %+v",
			got, fresh, want["t00"].Epoch, aging)
	}
	wantCalls("Positions of fresh, new, expired and aging counters", 1, 4, 4)

	// Each was written with keep from now: all fresh, read alone.
	again, err := subscriber.Positions(ctx, []string{"fresh", "new", "t00", "aging"}, keep)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(again, got) {
		t.Errorf("Positions again = %v, want %v", again, got)
	}
	wantCalls("Positions again", 1, 0, 4)
}
