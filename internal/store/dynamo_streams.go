package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithytime "github.com/aws/smithy-go/time"
	"golang.org/x/sync/errgroup"
)

const (
	// counterTries bounds the rounds of NextPosition and Positions. A round
	// fails only when the counter expired and another writer restarted it
	// (or DynamoDB deleted it) in between: one more round then succeeds, so
	// running out means something keeps rewriting the counter.
	counterTries = 5

	// BatchGetItem reads at most 100 keys. DynamoDB returns the ones it
	// throttled as UnprocessedKeys, retried as batchWrite retries writes
	// (batchAttempts, dynamo.go).
	batchGetSize = 100

	// reservePollMax caps the wait between looks at a pending reservation:
	// a publish completes in milliseconds, and a duplicate should hear the
	// outcome soon after.
	reservePollMax = 250 * time.Millisecond

	// Idempotency items' states.
	statePending = "pending"
	stateDone    = "done"
)

// counterItem is a topic's position counter.
type counterItem struct {
	itemKeys
	Offset    uint64 `dynamodbav:"offset"`
	Epoch     string `dynamodbav:"epoch"`
	ExpiresAt int64  `dynamodbav:"expiresAt"`
}

// historyItem is one retained message.
type historyItem struct {
	itemKeys
	Epoch     string `dynamodbav:"epoch"`
	Envelope  []byte `dynamodbav:"envelope"`
	ExpiresAt int64  `dynamodbav:"expiresAt"`
}

// idemItem is an idempotency key's reservation, and once its publish is
// accepted, that publish's outcome.
type idemItem struct {
	itemKeys
	State     string `dynamodbav:"state"`
	MessageID string `dynamodbav:"messageId,omitempty"`
	Epoch     string `dynamodbav:"epoch,omitempty"`
	Offset    uint64 `dynamodbav:"offset,omitempty"`
	ExpiresAt int64  `dynamodbav:"expiresAt"`
}

// NextPosition is one UpdateItem in the common case: ADD is atomic in
// DynamoDB, so concurrent publishers, in any number of processes, each get
// their own offset with no gap.
func (s *DynamoDB) NextPosition(ctx context.Context, topic string, keep time.Duration) (Position, error) {
	if err := checkStreamTopic(topic); err != nil {
		return Position{}, err
	}
	if err := checkKeep(keep); err != nil {
		return Position{}, err
	}
	return s.counter(ctx, topic, keep, true)
}

// Positions reads every topic's counter in one strongly consistent
// BatchGetItem, and returns those that are live with at least keep/2 left
// as read: no write. The others (none yet, expired, or less than keep/2
// left) go through counter, a few at a time, which starts, restarts or
// refreshes each atomically.
//
// A read answers as well as counter's update would: the subscription is
// stored before Positions is called, and a strongly consistent read sees
// every offset taken before it, so a publish that takes a later one reads
// the subscription and delivers live.
func (s *DynamoDB) Positions(ctx context.Context, topics []string, keep time.Duration) (map[string]Position, error) {
	topics, err := checkPositions(topics, keep)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Position, len(topics))
	if len(topics) == 0 {
		return out, nil
	}
	counters, err := s.readCounters(ctx, topics)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var stale []string
	for _, topic := range topics {
		c, ok := counters[topic]
		if !ok || !positionFresh(c.ExpiresAt, now, keep) {
			stale = append(stale, topic)
			continue
		}
		out[topic] = Position{Epoch: c.Epoch, Offset: c.Offset}
	}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(subscribeConcurrency)
	for _, topic := range stale {
		g.Go(func() error {
			pos, err := s.counter(ctx, topic, keep, false)
			if err != nil {
				return fmt.Errorf("position of topic %q: %w", topic, err)
			}
			mu.Lock()
			out[topic] = pos
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// readCounters reads the counters of topics, by topic, strongly
// consistently, batchGetSize at a time; a topic without a counter has no
// entry.
func (s *DynamoDB) readCounters(ctx context.Context, topics []string) (map[string]counterItem, error) {
	proj, err := expression.NewBuilder().WithProjection(expression.NamesList(
		expression.Name(attrPK), expression.Name(attrOffset), expression.Name(attrEpoch), expression.Name(attrExpiresAt),
	)).Build()
	if err != nil {
		return nil, err
	}
	keys := make([]map[string]types.AttributeValue, len(topics))
	byKey := make(map[string]string, len(topics))
	for i, topic := range topics {
		keys[i] = itemKey(counterKey(topic), counterKey(topic))
		byKey[counterKey(topic)] = topic
	}
	out := make(map[string]counterItem, len(topics))
	for chunk := range slices.Chunk(keys, batchGetSize) {
		items, err := s.batchGet(ctx, types.KeysAndAttributes{
			Keys:                     chunk,
			ConsistentRead:           aws.Bool(true),
			ProjectionExpression:     proj.Projection(),
			ExpressionAttributeNames: proj.Names(),
		})
		if err != nil {
			return nil, err
		}
		for _, item := range items {
			var c counterItem
			if err := attributevalue.UnmarshalMap(item, &c); err != nil {
				return nil, fmt.Errorf("dynamodb counter item: %w", err)
			}
			topic, ok := byKey[c.PK]
			if !ok {
				return nil, fmt.Errorf("dynamodb BatchGetItem returned item %q, which was not asked for", c.PK)
			}
			out[topic] = c
		}
	}
	return out, nil
}

// batchGet reads one batch, retrying the keys DynamoDB left unprocessed
// as batchWrite does the writes. Each retry asks for them with req's own
// settings, so every read stays strongly consistent whatever
// UnprocessedKeys says.
func (s *DynamoDB) batchGet(ctx context.Context, req types.KeysAndAttributes) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	err := untilProcessed(ctx, "BatchGetItem", "keys", func() (int, error) {
		out, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{s.table: req},
		})
		if err != nil {
			return 0, err
		}
		items = append(items, out.Responses[s.table]...)
		req.Keys = out.UnprocessedKeys[s.table].Keys
		return len(req.Keys), nil
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}

// counter updates topic's counter and returns its position: advanced by
// one if advance, else as it is (offset 0 when it had none).
//
// The update is conditional on the counter being live, since DynamoDB
// deletes expired items lazily and an expired counter must not carry its
// offset and epoch into a new life. When the condition fails, a second
// update, conditional on the counter still being expired, restarts it in a
// new epoch. Both are atomic: whoever loses a race goes round again and
// updates what the winner wrote.
func (s *DynamoDB) counter(ctx context.Context, topic string, keep time.Duration, advance bool) (Position, error) {
	key := itemKey(counterKey(topic), counterKey(topic))
	offset, epoch, exp := expression.Name(attrOffset), expression.Name(attrEpoch), expression.Name(attrExpiresAt)
	for range counterTries {
		now := s.now()
		until := expression.Value(keepUntil(now, keep))
		newEpoch := expression.Value(newEpoch())

		update := expression.Set(epoch, expression.IfNotExists(epoch, newEpoch)).Set(exp, until)
		if advance {
			update = update.Add(offset, expression.Value(1))
		} else {
			update = update.Set(offset, expression.IfNotExists(offset, expression.Value(0)))
		}
		live := expression.AttributeNotExists(expression.Name(attrPK)).Or(exp.GreaterThan(expression.Value(now.Unix())))
		pos, err := s.updateCounter(ctx, key, update, live, advance)
		if !conditionFailed(err) {
			return pos, dynamoError(err)
		}

		start := expression.Value(0)
		if advance {
			start = expression.Value(1)
		}
		restart := expression.Set(offset, start).Set(epoch, newEpoch).Set(exp, until)
		expired := exp.LessThanEqual(expression.Value(now.Unix()))
		pos, err = s.updateCounter(ctx, key, restart, expired, advance)
		if !conditionFailed(err) {
			return pos, dynamoError(err)
		}
	}
	return Position{}, fmt.Errorf("%w: the counter of topic %q changed under every one of %d updates", ErrUnavailable, topic, counterTries)
}

// updateCounter makes one conditional update of a counter; publish says
// it is a publish's (NextPosition), whose cost WithConsumedCapacity reports.
func (s *DynamoDB) updateCounter(ctx context.Context, key map[string]types.AttributeValue, update expression.UpdateBuilder, cond expression.ConditionBuilder, publish bool) (Position, error) {
	expr, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
	if err != nil {
		return Position{}, err
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       key,
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ReturnValues:              types.ReturnValueAllNew,
		ReturnConsumedCapacity:    s.returnCapacity(publish),
	})
	if err != nil {
		return Position{}, err // conditionFailed looks at it as is
	}
	s.reportCapacity("NextPosition", out.ConsumedCapacity)
	var item counterItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &item); err != nil {
		return Position{}, fmt.Errorf("dynamodb counter item: %w", err)
	}
	return Position{Epoch: item.Epoch, Offset: item.Offset}, nil
}

// conditionFailed reports a failed condition; any other error comes back
// from the caller through dynamoError.
func conditionFailed(err error) bool {
	var failed *types.ConditionalCheckFailedException
	return errors.As(err, &failed)
}

// Retain is one PutItem; DynamoDB's TTL deletes the item, and History skips
// it once expired until then.
func (s *DynamoDB) Retain(ctx context.Context, topic string, pos Position, m Retained, ttl time.Duration) error {
	if err := checkRetain(topic, pos, m, ttl); err != nil {
		return err
	}
	if ttl == 0 {
		return nil // HISTORY_TTL=0 keeps none
	}
	item, err := attributevalue.MarshalMap(historyItem{
		itemKeys:  itemKeys{PK: historyPK(topic), SK: historySK(topic, m.Offset)},
		Epoch:     pos.Epoch,
		Envelope:  m.Envelope,
		ExpiresAt: keepUntil(s.now(), ttl),
	})
	if err != nil {
		return fmt.Errorf("dynamodb history item of topic %q: %w", topic, err)
	}
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:              &s.table,
		Item:                   item,
		ReturnConsumedCapacity: s.returnCapacity(true),
	})
	if err != nil {
		return dynamoError(err)
	}
	s.reportCapacity("Retain", out.ConsumedCapacity)
	return nil
}

// returnCapacity asks DynamoDB for a call's consumed capacity when
// WithConsumedCapacity wants it, for the calls of a publish.
func (s *DynamoDB) returnCapacity(publish bool) types.ReturnConsumedCapacity {
	if s.capacity == nil || !publish {
		return ""
	}
	return types.ReturnConsumedCapacityTotal
}

func (s *DynamoDB) reportCapacity(operation string, c *types.ConsumedCapacity) {
	if s.capacity != nil && c != nil {
		s.capacity(operation, aws.ToFloat64(c.CapacityUnits))
	}
}

// History reads the counter, then the history partition up to the
// counter's offset: what was published later reaches a subscriber stored
// before the call live, so it is left out rather than sent twice. Both
// reads are strongly consistent, so a message retained before the call is
// in the answer.
func (s *DynamoDB) History(ctx context.Context, topic string, since uint64, limit int) ([]Retained, Position, error) {
	if err := checkHistory(topic, limit); err != nil {
		return nil, Position{}, err
	}
	now := s.now()
	got, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            itemKey(counterKey(topic), counterKey(topic)),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, Position{}, dynamoError(err)
	}
	var c counterItem
	if err := attributevalue.UnmarshalMap(got.Item, &c); err != nil {
		return nil, Position{}, fmt.Errorf("dynamodb counter item of topic %q: %w", topic, err)
	}
	if got.Item == nil || !live(c.ExpiresAt, now) {
		return nil, Position{}, nil
	}
	pos := Position{Epoch: c.Epoch, Offset: c.Offset}
	if since >= pos.Offset {
		return nil, pos, nil
	}
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrPK).Equal(expression.Value(historyPK(topic))).
			And(expression.Key(attrSK).Between(
				expression.Value(historySK(topic, since+1)),
				expression.Value(historySK(topic, pos.Offset))))).
		// Expired items linger until DynamoDB deletes them; another
		// epoch's are of a counter that expired and started again.
		WithFilter(unexpired(now).And(expression.Name(attrEpoch).Equal(expression.Value(pos.Epoch)))).
		Build()
	if err != nil {
		return nil, Position{}, err
	}
	in := &dynamodb.QueryInput{
		TableName:                 &s.table,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    expr.KeyCondition(),
		FilterExpression:          expr.Filter(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	}
	var msgs []Retained
	// The filter applies after Limit: a page can come back short, so read
	// on until there are limit messages or the range ends.
	for len(msgs) < limit {
		in.Limit = aws.Int32(int32(min(limit-len(msgs), maxQueryLimit)))
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, Position{}, dynamoError(err)
		}
		var items []historyItem
		if err := attributevalue.UnmarshalListOfMaps(out.Items, &items); err != nil {
			return nil, Position{}, fmt.Errorf("dynamodb history items of topic %q: %w", topic, err)
		}
		for _, item := range items {
			offset, err := historyOffset(item.SK)
			if err != nil {
				return nil, Position{}, err
			}
			msgs = append(msgs, Retained{Offset: offset, Envelope: item.Envelope})
		}
		if out.LastEvaluatedKey == nil {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	return msgs, pos, nil
}

// historyOffset reads the offset back from a history item's sort key.
func historyOffset(sk string) (uint64, error) {
	const digits = 20
	if len(sk) < digits {
		return 0, fmt.Errorf("dynamodb history item %q: no offset in its key", sk)
	}
	offset, err := strconv.ParseUint(sk[len(sk)-digits:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("dynamodb history item %q: %w", sk, err)
	}
	return offset, nil
}

// Reserve puts a pending reservation unless the key is held: the condition
// makes it one atomic claim, so of concurrent duplicates exactly one goes
// on to publish. The others read what holds the key, consistently, and
// answer its outcome or wait for it.
func (s *DynamoDB) Reserve(ctx context.Context, topic, key string) (Outcome, error) {
	if err := checkTopicKey(topic, key); err != nil {
		return Outcome{}, err
	}
	id := idemItemKey(topic, key)
	exp := expression.Name(attrExpiresAt)
	for attempt := 1; ; attempt++ {
		now := s.now()
		item, err := attributevalue.MarshalMap(idemItem{
			itemKeys:  itemKeys{PK: id, SK: id},
			State:     statePending,
			ExpiresAt: keepUntil(now, IdempotencyWindow),
		})
		if err != nil {
			return Outcome{}, fmt.Errorf("dynamodb idempotency item: %w", err)
		}
		free, err := expression.NewBuilder().
			WithCondition(expression.AttributeNotExists(expression.Name(attrPK)).Or(exp.LessThanEqual(expression.Value(now.Unix())))).
			Build()
		if err != nil {
			return Outcome{}, err
		}
		_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                 &s.table,
			Item:                      item,
			ConditionExpression:       free.Condition(),
			ExpressionAttributeNames:  free.Names(),
			ExpressionAttributeValues: free.Values(),
		})
		if !conditionFailed(err) {
			return Outcome{}, dynamoError(err)
		}

		got, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      &s.table,
			Key:            itemKey(id, id),
			ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return Outcome{}, dynamoError(err)
		}
		var held idemItem
		if err := attributevalue.UnmarshalMap(got.Item, &held); err != nil {
			return Outcome{}, fmt.Errorf("dynamodb idempotency item: %w", err)
		}
		switch {
		case got.Item == nil || !live(held.ExpiresAt, s.now()):
			continue // released or expired since: claim it
		case held.State == stateDone:
			o := Outcome{MessageID: held.MessageID, Position: Position{Epoch: held.Epoch, Offset: held.Offset}}
			return o, fmt.Errorf("topic %q, key %q: %w", topic, key, ErrDuplicate)
		}
		// Pending: another publish holds it. Wait for its outcome.
		if err := smithytime.SleepWithContext(ctx, backoff(attempt, reservePollMax)); err != nil {
			return Outcome{}, err
		}
	}
}

// Complete writes the outcome whether or not the reservation is still
// there: the publish was accepted with the key, which is what a later
// duplicate must hear.
func (s *DynamoDB) Complete(ctx context.Context, topic, key string, o Outcome) error {
	if err := checkTopicKey(topic, key); err != nil {
		return err
	}
	if err := checkOutcome(o); err != nil {
		return err
	}
	id := idemItemKey(topic, key)
	item, err := attributevalue.MarshalMap(idemItem{
		itemKeys:  itemKeys{PK: id, SK: id},
		State:     stateDone,
		MessageID: o.MessageID,
		Epoch:     o.Position.Epoch,
		Offset:    o.Position.Offset,
		ExpiresAt: keepUntil(s.now(), IdempotencyWindow),
	})
	if err != nil {
		return fmt.Errorf("dynamodb idempotency item: %w", err)
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: item})
	return dynamoError(err)
}

// Release expires a pending reservation rather than deleting it: Reserve
// takes an expired one as free, DynamoDB's TTL deletes it, and the store
// needs no DeleteItem right. It is set an hour back so that a process
// whose clock lags a little sees it expired too. A completed reservation
// stays: its publish was accepted.
func (s *DynamoDB) Release(ctx context.Context, topic, key string) error {
	if err := checkTopicKey(topic, key); err != nil {
		return err
	}
	id := idemItemKey(topic, key)
	expr, err := expression.NewBuilder().
		WithUpdate(expression.Set(expression.Name(attrExpiresAt), expression.Value(s.now().Add(-time.Hour).Unix()))).
		WithCondition(expression.Name(attrState).Equal(expression.Value(statePending))).
		Build()
	if err != nil {
		return err
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       itemKey(id, id),
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	if conditionFailed(err) {
		return nil // not reserved, or completed: nothing to release
	}
	return dynamoError(err)
}
