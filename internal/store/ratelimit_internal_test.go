package store

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// conflictingDB answers every bucket read with the same item and every
// write as a conflict: as if other takers always wrote first, which no
// test against dynalite can arrange.
type conflictingDB struct {
	dynamoAPI // nil: the store may call only GetItem and UpdateItem here
	writes    atomic.Int64
}

func (*conflictingDB) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return &dynamodb.GetItemOutput{}, nil // no bucket yet: a full one
}

func (d *conflictingDB) UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	d.writes.Add(1)
	return nil, &types.ConditionalCheckFailedException{}
}

// Conflicts are retried, but not for ever: a bucket that can never be
// written is an unavailable store, reported within the attempts' bound,
// and never a token granted unwritten.
func TestTakeTokenGivesUpOnEndlessConflicts(t *testing.T) {
	t.Parallel()
	db := &conflictingDB{}
	s := &DynamoDB{db: db, table: "t", now: time.Now}
	ok, err := s.TakeToken(context.Background(), "c1", RateLimit{Rate: 1, Burst: 5})
	if ok || !errors.Is(err, ErrUnavailable) {
		t.Errorf("TakeToken = %v, %v; want refused with ErrUnavailable", ok, err)
	}
	if n := db.writes.Load(); n != rateAttempts {
		t.Errorf("%d conditional writes, want %d", n, rateAttempts)
	}
	// A caller's deadline ends the retries sooner.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if ok, err := s.TakeToken(ctx, "c1", RateLimit{Rate: 1, Burst: 5}); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("TakeToken under a 10ms deadline = %v, %v; want the deadline", ok, err)
	}
}
