package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithytime "github.com/aws/smithy-go/time"
	"golang.org/x/time/rate"
)

// A connection's publishes are rate limited by a token bucket kept in the
// store, not in the process: on AWS each publish is a Lambda invocation,
// and no process state survives from one to the next (nor is one
// connection's next frame sure to reach the same instance).
//
// On DynamoDB the bucket is one item per connection:
//
//	item   pk            sk           attributes
//	rate   rate#<id>     conn#<id>    tokens, at, ver, expiresAt
//
// Its sk is the connection's, so the byConnection index lists it with the
// connection's other items and DeleteConnection removes it with them. Its
// pk starts with rate#, which no topic (topic#) or user (user#) key does,
// so Topics, Subscribers, CountSubscribers and UserConnections never read
// it. It expires with the connection's TTL, which also clears the bucket a
// publish racing its connection's $disconnect may write after the delete.

// RateLimit is a token bucket: Burst tokens at most, refilled at Rate
// tokens per second; each publish takes one.
type RateLimit struct {
	Rate  float64
	Burst int
}

// RateLimiter keeps a token bucket per connection; both stores satisfy
// it.
type RateLimiter interface {
	// TakeToken takes one token from the connection's bucket (full when
	// first used) and reports whether there was one. A refusal writes
	// nothing. Concurrent calls, from any number of processes for
	// DynamoDB, never take more tokens than the bucket holds.
	TakeToken(ctx context.Context, connectionID string, limit RateLimit) (bool, error)
}

var (
	_ RateLimiter = (*DynamoDB)(nil)
	_ RateLimiter = (*Memory)(nil)
)

const (
	ratePrefix = "rate#"
	attrTokens = "tokens"
	attrAt     = "at"
	attrVer    = "ver"

	// rateAttempts bounds the optimistic writes of one TakeToken: each
	// conflict means another call took a token meanwhile, so a call
	// retries only as often as the connection publishes at once.
	rateAttempts = 32
	// rateConflictBackoff spreads the retries of calls that conflicted,
	// so that they do not meet again at once.
	rateConflictBackoff = 5 * time.Millisecond
)

func rateKey(connectionID string) string { return ratePrefix + connectionID }

func checkRateLimit(connectionID string, limit RateLimit) error {
	if err := checkConnectionID(connectionID); err != nil {
		return err
	}
	if !(limit.Rate > 0) || math.IsInf(limit.Rate, 0) || limit.Burst < 1 {
		return fmt.Errorf("%w: rate limit %v/s with a burst of %d, want both above 0", ErrInvalidArgument, limit.Rate, limit.Burst)
	}
	return nil
}

// refill is the bucket at now: tokens left at at, plus what the rate has
// added since, up to the burst.
func refill(tokens float64, at, now time.Time, limit RateLimit) float64 {
	elapsed := now.Sub(at).Seconds()
	if elapsed < 0 {
		elapsed = 0 // a clock that stepped back adds nothing
	}
	return min(float64(limit.Burst), tokens+elapsed*limit.Rate)
}

type rateItem struct {
	Tokens    float64 `dynamodbav:"tokens"`
	At        int64   `dynamodbav:"at"` // Unix nanoseconds of the last take
	Ver       int64   `dynamodbav:"ver"`
	ExpiresAt int64   `dynamodbav:"expiresAt"`
}

// TakeToken reads the bucket, computes it at now and writes it back less
// one token, on the condition that nobody wrote it in between (its
// version is the one read); a conflict reads it again. A bucket that is
// absent, or expired but not yet deleted, starts full.
func (s *DynamoDB) TakeToken(ctx context.Context, connectionID string, limit RateLimit) (bool, error) {
	if err := checkRateLimit(connectionID, limit); err != nil {
		return false, err
	}
	key := itemKey(rateKey(connectionID), connKey(connectionID))
	for attempt := 1; ; attempt++ {
		now := s.now()
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return false, dynamoError(err)
		}
		tokens, exists := float64(limit.Burst), out.Item != nil
		var was rateItem
		if exists {
			if err := attributevalue.UnmarshalMap(out.Item, &was); err != nil {
				return false, fmt.Errorf("dynamodb rate item of connection %q: %w", connectionID, err)
			}
			if live(was.ExpiresAt, now) {
				tokens = refill(was.Tokens, time.Unix(0, was.At), now, limit)
			}
		}
		if tokens < 1 {
			return false, nil
		}
		cond := expression.AttributeNotExists(expression.Name(attrPK))
		if exists {
			cond = expression.Name(attrVer).Equal(expression.Value(was.Ver))
		}
		expr, err := expression.NewBuilder().
			WithUpdate(expression.
				Set(expression.Name(attrTokens), expression.Value(tokens-1)).
				Set(expression.Name(attrAt), expression.Value(now.UnixNano())).
				Set(expression.Name(attrVer), expression.Value(was.Ver+1)).
				Set(expression.Name(attrExpiresAt), expression.Value(expiresAt(now)))).
			WithCondition(cond).
			Build()
		if err != nil {
			return false, err
		}
		_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 &s.table,
			Key:                       key,
			UpdateExpression:          expr.Update(),
			ConditionExpression:       expr.Condition(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
		})
		var conflict *types.ConditionalCheckFailedException
		switch {
		case err == nil:
			return true, nil
		case !errors.As(err, &conflict):
			return false, dynamoError(err)
		case attempt == rateAttempts:
			return false, fmt.Errorf("%w: rate limit of connection %q: %d conflicting writes in a row", ErrUnavailable, connectionID, attempt)
		}
		if err := smithytime.SleepWithContext(ctx, rand.N(rateConflictBackoff)+time.Millisecond); err != nil {
			return false, err
		}
	}
}

// memRates is the memory store's buckets: x/time/rate's limiter per
// connection, on the store's clock.
type memRates struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func (r *memRates) forget(connectionID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.buckets, connectionID)
}

// TakeToken takes a token from the connection's limiter, made full on
// first use; DeleteConnection forgets it.
func (m *Memory) TakeToken(_ context.Context, connectionID string, limit RateLimit) (bool, error) {
	if err := checkRateLimit(connectionID, limit); err != nil {
		return false, err
	}
	now := m.now()
	r := &m.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buckets == nil {
		r.buckets = make(map[string]*rate.Limiter)
	}
	l, ok := r.buckets[connectionID]
	if !ok {
		l = rate.NewLimiter(rate.Limit(limit.Rate), limit.Burst)
		r.buckets[connectionID] = l
	} else if l.Limit() != rate.Limit(limit.Rate) || l.Burst() != limit.Burst {
		l.SetLimitAt(now, rate.Limit(limit.Rate))
		l.SetBurstAt(now, limit.Burst)
	}
	return l.AllowN(now, 1), nil
}
