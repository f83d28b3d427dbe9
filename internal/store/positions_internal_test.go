package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// batchGetDB holds counters and leaves the last few keys of a batch
// unprocessed the first times it is called, as DynamoDB does when a
// partition is throttled (dynalite never does). It returns the unprocessed
// keys alone, without the request's settings: the store must ask again
// strongly consistently all the same.
type batchGetDB struct {
	dynamoAPI                             // nil: the store may call only BatchGetItem and UpdateItem here
	counters       map[string]counterItem // by pk
	throttledCalls int                    // calls that leave keys unprocessed
	leave          int                    // keys left unprocessed by those calls

	mu      sync.Mutex
	calls   int
	keys    []int // keys asked for by each call
	updates int
}

func (db *batchGetDB) BatchGetItem(_ context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls++
	out := dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{}}
	for table, req := range in.RequestItems {
		db.keys = append(db.keys, len(req.Keys))
		if len(req.Keys) > batchGetSize {
			return nil, fmt.Errorf("%d keys in one batch", len(req.Keys))
		}
		if !aws.ToBool(req.ConsistentRead) {
			return nil, errors.New("an eventually consistent read")
		}
		done := req.Keys
		if db.calls <= db.throttledCalls {
			cut := max(len(req.Keys)-db.leave, 0)
			done = req.Keys[:cut]
			out.UnprocessedKeys = map[string]types.KeysAndAttributes{table: {Keys: req.Keys[cut:]}}
		}
		for _, key := range done {
			var k itemKeys
			if err := attributevalue.UnmarshalMap(key, &k); err != nil {
				return nil, err
			}
			if c, ok := db.counters[k.PK]; ok {
				item, err := attributevalue.MarshalMap(c)
				if err != nil {
					return nil, err
				}
				out.Responses[table] = append(out.Responses[table], item)
			}
		}
	}
	return &out, nil
}

func (db *batchGetDB) UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.updates++
	return nil, errors.New("no write expected")
}

// liveCounters are topics' counters that expire keep after now, with
// their positions.
func liveCounters(n int, now time.Time, keep time.Duration) ([]string, map[string]counterItem, map[string]Position) {
	topics := make([]string, n)
	counters := map[string]counterItem{}
	want := map[string]Position{}
	for i := range topics {
		topics[i] = fmt.Sprintf("t%03d", i)
		key := counterKey(topics[i])
		counters[key] = counterItem{itemKeys: itemKeys{PK: key, SK: key}, Offset: uint64(i), Epoch: "e" + topics[i], ExpiresAt: keepUntil(now, keep)}
		want[topics[i]] = Position{Epoch: "e" + topics[i], Offset: uint64(i)}
	}
	return topics, counters, want
}

func TestPositionsRetriesUnprocessedKeys(t *testing.T) {
	t.Parallel()
	now := time.Now()
	topics, counters, want := liveCounters(MaxPositionsTopics, now, time.Hour)
	tests := []struct {
		name           string
		throttledCalls int
		leave          int
		canceled       bool // the caller gave up before the call
		wantErr        error
		wantCalls      int
	}{
		{"all processed", 0, 0, false, nil, 1},
		{"retried until processed", 3, 4, false, nil, 4},
		{"gives up", 100, 4, false, ErrUnavailable, batchAttempts},
		{"stops when the caller does", 100, 4, true, context.Canceled, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := &batchGetDB{counters: counters, throttledCalls: tt.throttledCalls, leave: tt.leave}
			s := &DynamoDB{db: db, table: "t", now: func() time.Time { return now }}
			ctx, cancel := context.WithCancel(t.Context())
			if tt.canceled {
				cancel()
			}
			defer cancel()
			got, err := s.Positions(ctx, topics, time.Hour)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Positions error = %v, want %v", err, tt.wantErr)
			}
			if db.calls != tt.wantCalls || db.updates != 0 {
				t.Errorf("BatchGetItem called %d times, UpdateItem %d; want %d and none", db.calls, db.updates, tt.wantCalls)
			}
			if tt.wantErr == nil && !maps.Equal(got, want) {
				t.Errorf("Positions = %v, want %v", got, want)
			}
		})
	}
}

// readCounters reads more keys than one BatchGetItem takes in batches of
// batchGetSize. Positions never asks for so many (MaxPositionsTopics).
func TestReadCountersInBatches(t *testing.T) {
	t.Parallel()
	now := time.Now()
	topics, counters, want := liveCounters(batchGetSize+batchGetSize/2, now, time.Hour)
	db := &batchGetDB{counters: counters}
	s := &DynamoDB{db: db, table: "t", now: func() time.Time { return now }}
	got, err := s.readCounters(t.Context(), topics)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(db.keys) != fmt.Sprint([]int{batchGetSize, batchGetSize / 2}) {
		t.Errorf("BatchGetItem asked for %v keys, want %d then %d", db.keys, batchGetSize, batchGetSize/2)
	}
	if len(got) != len(want) {
		t.Fatalf("readCounters returned %d counters, want %d", len(got), len(want))
	}
	for topic, pos := range want {
		if c := got[topic]; c.Epoch != pos.Epoch || c.Offset != pos.Offset {
			t.Errorf("counter of %s = %+v, want %+v", topic, c, pos)
		}
	}
}
