package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithytime "github.com/aws/smithy-go/time"
	"golang.org/x/sync/errgroup"
)

const (
	// maxIdleConnsPerHost sizes the HTTP client for the concurrent calls of
	// a fan-out; the SDK's default keeps 10 idle connections per host and
	// dials (TLS included) for every request beyond that.
	maxIdleConnsPerHost = 128

	// subscribeConcurrency bounds the UpdateItem calls of one Subscribe.
	subscribeConcurrency = 8

	// BatchWriteItem takes at most 25 requests. DynamoDB returns the ones it
	// throttled as UnprocessedItems; they are retried batchAttempts times in
	// all, with the backoff of a throttled call (retry.go).
	batchSize     = 25
	batchAttempts = 6

	// maxQueryLimit caps the items one Query evaluates, whatever the caller's
	// page size.
	maxQueryLimit = 1000

	// A store that accepts connections and never answers (a blackholed
	// route, a hung local DynamoDB) must fail calls within seconds rather
	// than pin them until the caller's deadline. DynamoDB answers in
	// milliseconds; these bound each attempt, and retry.go bounds how many
	// attempts may time out (maxTimeoutAttempts): two of 4 s end within
	// CALL_TIMEOUT's default 10 s. A busy single-threaded dynalite on a
	// loaded machine can take over 2 s to answer, hence no tighter.
	dialTimeout           = 2 * time.Second
	tlsHandshakeTimeout   = 3 * time.Second
	responseHeaderTimeout = 4 * time.Second
)

// dynamoAPI is the part of *dynamodb.Client the store uses; a test stands in
// for it to produce what dynalite never does (unprocessed batch writes).
type dynamoAPI interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// DynamoDB is the Store on AWS: one table laid out as schema.go describes.
type DynamoDB struct {
	db       dynamoAPI
	table    string
	now      func() time.Time
	capacity func(operation string, units float64) // nil: not asked for
}

var _ Store = (*DynamoDB)(nil)

// NewDynamoDB returns a store on table, which must exist (see EnsureTable).
func NewDynamoDB(client *dynamodb.Client, table string, opts ...Option) *DynamoDB {
	o := newOptions(opts)
	return &DynamoDB{db: client, table: table, now: o.now, capacity: o.capacity}
}

// NewDynamoDBClient returns a client for cfg's region and credentials, at
// endpoint if it is not empty (dynalite, DynamoDB Local), with an HTTP client
// that keeps enough idle connections for concurrent use, gives up on a store
// that does not answer within seconds, and retries meant for callers that
// hold a deadline (retry.go). It replaces cfg's retryer;
// cfg.RetryMaxAttempts (AWS_MAX_ATTEMPTS) still overrides the attempts.
func NewDynamoDBClient(cfg aws.Config, endpoint string) *dynamodb.Client {
	return newDynamoDBClient(cfg, endpoint, attemptTimeouts{dialTimeout, tlsHandshakeTimeout, responseHeaderTimeout})
}

// attemptTimeouts bound one attempt of a call: NewDynamoDBClient's are the
// constants above; tests set shorter ones against a store that never
// answers, and longer ones where a busy dynalite may answer late.
type attemptTimeouts struct {
	dial, tlsHandshake, responseHeader time.Duration
}

func newDynamoDBClient(cfg aws.Config, endpoint string, timeouts attemptTimeouts) *dynamodb.Client {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = maxIdleConnsPerHost
		t.MaxIdleConnsPerHost = maxIdleConnsPerHost
		t.TLSHandshakeTimeout = timeouts.tlsHandshake
		t.ResponseHeaderTimeout = timeouts.responseHeader
	}).WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = timeouts.dial
	})
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.HTTPClient = httpClient
		o.Retryer = newRetryer()
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
}

// EnsureTable creates table as schema.go declares it unless it exists, and
// waits until it is ACTIVE. It refuses an existing table keyed differently
// (such as one keyed by connectionId alone). On AWS the table comes from
// deploy/; this is for the devstack and tests.
func EnsureTable(ctx context.Context, client *dynamodb.Client, table string) error {
	want := createTableInput(table)
	_, err := client.CreateTable(ctx, want)
	var exists *types.ResourceInUseException
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("create table %s: %w", table, dynamoError(err))
	}
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 5 * time.Second
	})
	out, err := waiter.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("wait for table %s: %w", table, dynamoError(err))
	}
	if !sameKeys(out.Table.KeySchema, want.KeySchema) || !hasIndex(out.Table.GlobalSecondaryIndexes, want.GlobalSecondaryIndexes[0]) {
		return fmt.Errorf("table %s exists with other keys than wsgateway's (pk, sk and index %s): use another TABLE_NAME", table, indexByConnection)
	}
	return enableTTL(ctx, client, table)
}

// enableTTL turns on expiry of the TTL attribute, which CreateTable cannot:
// without it, items of connections whose $disconnect never came would stay
// in the table for good. An endpoint without the TTL API (dynalite answers
// UnknownOperationException) is tolerated, since reads filter expired items
// anyway; any other refusal is an error.
func enableTTL(ctx context.Context, client *dynamodb.Client, table string) error {
	desc, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil && !unknownOperation(err) {
		return fmt.Errorf("describe TTL of table %s: %w", table, dynamoError(err))
	}
	if err == nil && desc.TimeToLiveDescription != nil {
		switch desc.TimeToLiveDescription.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			// Enabling it again is a ValidationException.
			if aws.ToString(desc.TimeToLiveDescription.AttributeName) == attrExpiresAt {
				return nil
			}
			return fmt.Errorf("table %s expires items by %q, not wsgateway's %s: use another TABLE_NAME",
				table, aws.ToString(desc.TimeToLiveDescription.AttributeName), attrExpiresAt)
		}
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrExpiresAt),
			Enabled:       aws.Bool(true),
		},
	})
	if err != nil && !unknownOperation(err) {
		return fmt.Errorf("enable TTL on table %s: %w", table, dynamoError(err))
	}
	return nil
}

// unknownOperation reports the error of an endpoint that lacks an API.
func unknownOperation(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "UnknownOperationException"
}

func sameKeys(a, b []types.KeySchemaElement) bool {
	return slices.EqualFunc(a, b, func(x, y types.KeySchemaElement) bool {
		return aws.ToString(x.AttributeName) == aws.ToString(y.AttributeName) && x.KeyType == y.KeyType
	})
}

func hasIndex(have []types.GlobalSecondaryIndexDescription, want types.GlobalSecondaryIndex) bool {
	return slices.ContainsFunc(have, func(d types.GlobalSecondaryIndexDescription) bool {
		return aws.ToString(d.IndexName) == aws.ToString(want.IndexName) && sameKeys(d.KeySchema, want.KeySchema)
	})
}

// PutConnection writes the connection's item and, for a connection with a
// user, its membership item (user#<user>, conn#<id>): two PutItems sent at
// once rather than one BatchWriteItem, so $connect waits for one round trip
// either way, and the connection's put can return the item it replaced
// (ReturnValues, which BatchWriteItem lacks), whose old user must lose the
// connection if the user changed. Neither put is conditional on the other:
// if one fails, the call fails, $connect refuses the connection, and what
// was written is found by DeleteConnection (a 410 on a later post) or
// expires. A transaction would make the pair atomic at twice the write
// cost, for a connection that is refused anyway.
func (s *DynamoDB) PutConnection(ctx context.Context, c Connection) error {
	if err := checkConnectionID(c.ID); err != nil {
		return err
	}
	if err := checkOptionalUserID(c.Subject); err != nil {
		return err
	}
	expires := expiresAt(s.now())
	item, err := attributevalue.MarshalMapWithOptions(connectionItem{
		itemKeys:      itemKeys{PK: connKey(c.ID), SK: connKey(c.ID)},
		ExpiresAt:     expires,
		ConnectedAt:   c.ConnectedAt,
		Subject:       c.Subject,
		SourceIP:      c.SourceIP,
		UserAgent:     c.UserAgent,
		AllowedTopics: c.AllowedTopics,
		PublishTopics: c.PublishTopics,
	}, encodeItem)
	if err != nil {
		return fmt.Errorf("dynamodb item of connection %q: %w", c.ID, err)
	}
	var g errgroup.Group
	var old *dynamodb.PutItemOutput
	g.Go(func() error {
		var err error
		old, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:    &s.table,
			Item:         item,
			ReturnValues: types.ReturnValueAllOld,
		})
		return dynamoError(err)
	})
	if c.Subject != "" {
		g.Go(func() error {
			member, err := attributevalue.MarshalMap(membershipItem{
				itemKeys:  itemKeys{PK: userKey(c.Subject), SK: connKey(c.ID)},
				ExpiresAt: expires,
			})
			if err != nil {
				return fmt.Errorf("dynamodb membership item of connection %q: %w", c.ID, err)
			}
			_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: member})
			return dynamoError(err)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// Only a connection put again under another user gets here with work
	// to do; API Gateway never reuses a connection id, so $connect never
	// does it.
	var was connectionItem
	if err := attributevalue.UnmarshalMap(old.Attributes, &was); err != nil {
		return fmt.Errorf("dynamodb item replaced for connection %q: %w", c.ID, err)
	}
	if was.Subject == "" || was.Subject == c.Subject {
		return nil
	}
	return s.deleteItems(ctx, []map[string]types.AttributeValue{itemKey(userKey(was.Subject), connKey(c.ID))})
}

func (s *DynamoDB) GetConnection(ctx context.Context, connectionID string) (Connection, error) {
	if err := checkConnectionID(connectionID); err != nil {
		return Connection{}, err
	}
	now := s.now()
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &s.table,
		Key:            itemKey(connKey(connectionID), connKey(connectionID)),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return Connection{}, dynamoError(err)
	}
	if out.Item == nil {
		return Connection{}, fmt.Errorf("connection %q: %w", connectionID, ErrNotFound)
	}
	var item connectionItem
	if err := attributevalue.UnmarshalMap(out.Item, &item); err != nil {
		return Connection{}, fmt.Errorf("dynamodb item of connection %q: %w", connectionID, err)
	}
	if !live(item.ExpiresAt, now) {
		return Connection{}, fmt.Errorf("connection %q: %w", connectionID, ErrNotFound)
	}
	return Connection{
		ID:            connectionID,
		ConnectedAt:   item.ConnectedAt,
		Subject:       item.Subject,
		SourceIP:      item.SourceIP,
		UserAgent:     item.UserAgent,
		AllowedTopics: item.AllowedTopics,
		PublishTopics: item.PublishTopics,
	}, nil
}

// DeleteConnection deletes what the byConnection index lists for the
// connection. The index is eventually consistent: a subscription written a
// moment before may survive, until its TTL or the fan-out's 410 removes it.
func (s *DynamoDB) DeleteConnection(ctx context.Context, connectionID string) error {
	if err := checkConnectionID(connectionID); err != nil {
		return err
	}
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrSK).Equal(expression.Value(connKey(connectionID)))).
		WithProjection(expression.NamesList(expression.Name(attrPK), expression.Name(attrSK))).
		Build()
	if err != nil {
		return err
	}
	var keys []map[string]types.AttributeValue
	pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 &s.table,
		IndexName:                 aws.String(indexByConnection),
		KeyConditionExpression:    expr.KeyCondition(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return dynamoError(err)
		}
		// Projected to pk and sk, each item is the table key to delete.
		keys = append(keys, page.Items...)
	}
	return s.deleteItems(ctx, keys)
}

func (s *DynamoDB) Subscribe(ctx context.Context, connectionID, userID string, topics []string) error {
	topics, err := checkTopics(connectionID, topics)
	if err != nil {
		return err
	}
	if err := checkOptionalUserID(userID); err != nil {
		return err
	}
	now := s.now()
	return forEach(topics, subscribeConcurrency, func(topic string) error {
		return s.subscribe(ctx, connectionID, userID, topic, now)
	})
}

// subscribe writes one subscription. The common case, a new one, costs one
// write; subscribing again costs two and keeps the first subscribedAt.
//
// The user rides on the item (userId) so that CountSubscribers and
// Subscribers read it from the topic's partition alone. A connection
// without a user writes no userId: older emulators refuse empty strings.
func (s *DynamoDB) subscribe(ctx context.Context, connectionID, userID, topic string, now time.Time) error {
	key := itemKey(topicKey(topic), connKey(connectionID))
	at, exp := expression.Name(attrSubscribedAt), expression.Name(attrExpiresAt)
	subscribedAt, expires := expression.Value(formatTime(now)), expression.Value(expiresAt(now))
	withUser := func(u expression.UpdateBuilder) expression.UpdateBuilder {
		if userID == "" {
			return u.Remove(expression.Name(attrUserID))
		}
		return u.Set(expression.Name(attrUserID), expression.Value(userID))
	}
	fresh, err := expression.NewBuilder().
		WithUpdate(withUser(expression.Set(at, subscribedAt).Set(exp, expires))).
		// New, or expired but not yet deleted by DynamoDB: start afresh.
		WithCondition(expression.AttributeNotExists(exp).Or(exp.LessThanEqual(expression.Value(now.Unix())))).
		Build()
	if err != nil {
		return err
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       key,
		ConditionExpression:       fresh.Condition(),
		UpdateExpression:          fresh.Update(),
		ExpressionAttributeNames:  fresh.Names(),
		ExpressionAttributeValues: fresh.Values(),
	})
	var subscribed *types.ConditionalCheckFailedException
	if !errors.As(err, &subscribed) {
		return dynamoError(err)
	}
	// Live already: push the expiry out. if_not_exists covers an
	// Unsubscribe that deleted the item since the first write.
	refresh, err := expression.NewBuilder().
		WithUpdate(withUser(expression.Set(at, expression.IfNotExists(at, subscribedAt)).Set(exp, expires))).
		Build()
	if err != nil {
		return err
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.table,
		Key:                       key,
		UpdateExpression:          refresh.Update(),
		ExpressionAttributeNames:  refresh.Names(),
		ExpressionAttributeValues: refresh.Values(),
	})
	return dynamoError(err)
}

func (s *DynamoDB) Unsubscribe(ctx context.Context, connectionID string, topics []string) error {
	topics, err := checkTopics(connectionID, topics)
	if err != nil {
		return err
	}
	keys := make([]map[string]types.AttributeValue, len(topics))
	for i, topic := range topics {
		keys[i] = itemKey(topicKey(topic), connKey(connectionID))
	}
	return s.deleteItems(ctx, keys)
}

// Subscribers queries the topic's partition, consistently, so that a
// subscriber acked a moment ago gets the next message.
func (s *DynamoDB) Subscribers(ctx context.Context, topic string, limit int, pageToken string) (Page, error) {
	after, err := checkSubscribersArgs(topic, limit, pageToken)
	if err != nil {
		return Page{}, err
	}
	items, err := queryAfter[subscriptionItem](ctx, s, topicKey(topic), after, limit,
		expression.NamesList(expression.Name(attrSK), expression.Name(attrSubscribedAt), expression.Name(attrUserID)),
		"topic", topic)
	if err != nil {
		return Page{}, err
	}
	var subs []Subscription
	for _, item := range items {
		id := strings.TrimPrefix(item.SK, connPrefix)
		subs = append(subs, Subscription{ConnectionID: id, Topic: topic, UserID: item.UserID, SubscribedAt: item.SubscribedAt})
	}
	if len(subs) <= limit {
		return Page{Subscriptions: subs}, nil
	}
	return Page{
		Subscriptions: subs[:limit],
		NextToken:     encodePageToken(topic, subs[limit-1].ConnectionID),
	}, nil
}

// queryAfter reads partition pk consistently, in order, from the item
// after connection after's, projected to proj, expired items filtered
// out. DynamoDB filters them after it applies Limit, so a Query can come
// back short: queryAfter goes on until it has one item more than limit,
// which also tells whether there is a next page, or the partition ends.
// what and name name the partition, as in topic "t", in an error decoding
// its items.
func queryAfter[T any](ctx context.Context, s *DynamoDB, pk, after string, limit int, proj expression.ProjectionBuilder, what, name string) ([]T, error) {
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrPK).Equal(expression.Value(pk)).
			And(expression.Key(attrSK).GreaterThan(expression.Value(connKey(after))))).
		WithFilter(unexpired(s.now())).
		WithProjection(proj).
		Build()
	if err != nil {
		return nil, err
	}
	in := &dynamodb.QueryInput{
		TableName:                 &s.table,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    expr.KeyCondition(),
		FilterExpression:          expr.Filter(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	}
	var all []T
	for {
		in.Limit = aws.Int32(int32(min(limit-len(all), maxQueryLimit-1) + 1))
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, dynamoError(err)
		}
		var items []T
		if err := attributevalue.UnmarshalListOfMaps(out.Items, &items); err != nil {
			return nil, fmt.Errorf("dynamodb items of %s %q: %w", what, name, err)
		}
		all = append(all, items...)
		if len(all) > limit || out.LastEvaluatedKey == nil {
			return all, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// CountSubscribers pages through the topic's partition, projected to the
// user alone, with expired items filtered out by DynamoDB. The filter and
// the projection save only transfer: DynamoDB still reads, and charges
// for, every item of the partition, as Select COUNT would too, so a count
// costs what listing the subscribers does, less the bytes sent back. It
// reads consistently, as Subscribers does, so a subscriber acked a moment
// ago is counted.
func (s *DynamoDB) CountSubscribers(ctx context.Context, topic string) (connections, users int, err error) {
	if err := checkTopic(topic); err != nil {
		return 0, 0, err
	}
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrPK).Equal(expression.Value(topicKey(topic)))).
		WithFilter(unexpired(s.now())).
		WithProjection(expression.NamesList(expression.Name(attrUserID))).
		Build()
	if err != nil {
		return 0, 0, err
	}
	pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 &s.table,
		ConsistentRead:            aws.Bool(true),
		Limit:                     aws.Int32(maxQueryLimit),
		KeyConditionExpression:    expr.KeyCondition(),
		FilterExpression:          expr.Filter(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	seen := make(map[string]struct{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return 0, 0, dynamoError(err)
		}
		var items []subscriptionItem
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
			return 0, 0, fmt.Errorf("dynamodb items of topic %q: %w", topic, err)
		}
		// Each item left after the filter is one live subscription, even
		// one projected to nothing (no user).
		connections += len(items)
		for _, item := range items {
			if item.UserID != "" {
				seen[item.UserID] = struct{}{}
			}
		}
	}
	return connections, len(seen), nil
}

// UserConnections queries the user's partition (user#<user>), one
// membership item per connection, ordered by connection id, consistently,
// so that a connection opened a moment ago is reached.
func (s *DynamoDB) UserConnections(ctx context.Context, userID string, limit int, pageToken string) (ConnectionPage, error) {
	after, err := checkUserConnectionsArgs(userID, limit, pageToken)
	if err != nil {
		return ConnectionPage{}, err
	}
	items, err := queryAfter[itemKeys](ctx, s, userKey(userID), after, limit,
		expression.NamesList(expression.Name(attrSK)), "user", userID)
	if err != nil {
		return ConnectionPage{}, err
	}
	var ids []string
	for _, item := range items {
		ids = append(ids, strings.TrimPrefix(item.SK, connPrefix))
	}
	if len(ids) <= limit {
		return ConnectionPage{ConnectionIDs: ids}, nil
	}
	return ConnectionPage{ConnectionIDs: ids[:limit], NextToken: encodeUserPageToken(userID, ids[limit-1])}, nil
}

// Topics reads the byConnection index, which is eventually consistent. The
// connection's partition of the index also holds its own item (conn#) and
// its membership (user#): the key condition keeps topic# items alone, and
// no topic can make another kind of key, since every topic's key starts
// with topic#.
func (s *DynamoDB) Topics(ctx context.Context, connectionID string) ([]string, error) {
	if err := checkConnectionID(connectionID); err != nil {
		return nil, err
	}
	expr, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrSK).Equal(expression.Value(connKey(connectionID))).
			And(expression.Key(attrPK).BeginsWith(topicPrefix))).
		WithFilter(unexpired(s.now())).
		WithProjection(expression.NamesList(expression.Name(attrPK))).
		Build()
	if err != nil {
		return nil, err
	}
	pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 &s.table,
		IndexName:                 aws.String(indexByConnection),
		KeyConditionExpression:    expr.KeyCondition(),
		FilterExpression:          expr.Filter(),
		ProjectionExpression:      expr.Projection(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	var topics []string
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, dynamoError(err)
		}
		var items []itemKeys
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
			return nil, fmt.Errorf("dynamodb items of connection %q: %w", connectionID, err)
		}
		for _, item := range items {
			topics = append(topics, strings.TrimPrefix(item.PK, topicPrefix))
		}
	}
	return topics, nil
}

// Ping describes the table: it checks the endpoint, the credentials and
// that the table exists, and costs no capacity.
// A missing table is ErrTableNotFound, for /readyz to say so.
func (s *DynamoDB) Ping(ctx context.Context) error {
	_, err := s.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &s.table})
	var missing *types.ResourceNotFoundException
	if errors.As(err, &missing) {
		return fmt.Errorf("%w: %s: %w", ErrTableNotFound, s.table, err)
	}
	return dynamoError(err)
}

// deleteItems deletes keys in batches of 25.
func (s *DynamoDB) deleteItems(ctx context.Context, keys []map[string]types.AttributeValue) error {
	for chunk := range slices.Chunk(keys, batchSize) {
		writes := make([]types.WriteRequest, len(chunk))
		for i, key := range chunk {
			writes[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key}}
		}
		if err := s.batchWrite(ctx, writes); err != nil {
			return err
		}
	}
	return nil
}

// batchWrite sends one batch and retries what DynamoDB left unprocessed
// (it does so when throttled).
func (s *DynamoDB) batchWrite(ctx context.Context, writes []types.WriteRequest) error {
	pending := map[string][]types.WriteRequest{s.table: writes}
	return untilProcessed(ctx, "BatchWriteItem", "writes", func() (int, error) {
		out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
		if err != nil {
			return 0, err
		}
		pending = out.UnprocessedItems
		return len(pending[s.table]), nil
	})
}

// untilProcessed sends a batch call until DynamoDB leaves nothing of it
// unprocessed (it leaves some when throttled), backing off between tries
// and giving up after batchAttempts; send answers how much was left.
func untilProcessed(ctx context.Context, op, what string, send func() (left int, err error)) error {
	for attempt := 1; ; attempt++ {
		left, err := send()
		if err != nil {
			return dynamoError(err)
		}
		if left == 0 {
			return nil
		}
		if attempt == batchAttempts {
			return fmt.Errorf("%w: dynamodb %s: %d %s still unprocessed after %d attempts", ErrUnavailable, op, left, what, attempt)
		}
		if err := smithytime.SleepWithContext(ctx, backoff(attempt, throttleBackoffMax)); err != nil {
			return err
		}
	}
}

// forEach calls fn for every item, at most n at a time, and joins the
// errors: every item is tried, since one failed write does not make the
// others pointless, and the caller hears of each failure.
func forEach(items []string, n int, fn func(string) error) error {
	var g errgroup.Group
	g.SetLimit(n)
	errs := make([]error, len(items))
	for i, item := range items {
		g.Go(func() error {
			errs[i] = fn(item)
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through errs
	return errors.Join(errs...)
}

// dynamoError marks the errors the SDK itself counts as transient (could
// not connect, throttled, 5xx) once its retries are spent: the store is
// unavailable and the caller may try again later. Anything else (a missing
// table, a rejected request) is a fault to fix, passed on as is.
func dynamoError(err error) error {
	if err == nil {
		return nil
	}
	if isThrottle(err) || retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// The items as stored, in the layout schema.go describes: the dynamodbav
// names are its attr* names, which a struct tag cannot refer to.
type itemKeys struct {
	PK string `dynamodbav:"pk"`
	SK string `dynamodbav:"sk"`
}

type connectionItem struct {
	itemKeys
	ExpiresAt   int64     `dynamodbav:"expiresAt"` // a missing one reads as 0: expired
	ConnectedAt time.Time `dynamodbav:"connectedAt,omitempty"`
	// Empty strings are left out rather than stored: older DynamoDB
	// emulators refuse them.
	Subject   string `dynamodbav:"subject,omitempty"`
	SourceIP  string `dynamodbav:"sourceIp,omitempty"`
	UserAgent string `dynamodbav:"userAgent,omitempty"`
	// nil (any topic) is no attribute; empty (no topic) is an empty list.
	AllowedTopics []string `dynamodbav:"allowedTopics,omitempty"`
	PublishTopics []string `dynamodbav:"publishTopics,omitempty"`
}

// subscriptionItem is what Subscribers reads of a subscription; Subscribe
// writes it with an update expression.
type subscriptionItem struct {
	itemKeys
	SubscribedAt time.Time `dynamodbav:"subscribedAt"`
	UserID       string    `dynamodbav:"userId,omitempty"`
}

// membershipItem makes a connection one of its user's: the user's
// partition lists them, and its sk (the connection's) puts it in the
// connection's partition of byConnection, for DeleteConnection to find.
type membershipItem struct {
	itemKeys
	ExpiresAt int64 `dynamodbav:"expiresAt"` // the connection's
}

// encodeItem stores times as formatTime writes them, and a zero time as no
// attribute.
func encodeItem(o *attributevalue.EncoderOptions) {
	o.OmitEmptyTime = true
	o.EncodeTime = func(t time.Time) (types.AttributeValue, error) {
		return &types.AttributeValueMemberS{Value: formatTime(t)}, nil
	}
}

func itemKey(pk, sk string) map[string]types.AttributeValue {
	key, _ := attributevalue.MarshalMap(itemKeys{PK: pk, SK: sk}) // two strings: cannot fail
	return key
}

// unexpired filters out items DynamoDB has not yet deleted after their TTL,
// as live does.
func unexpired(now time.Time) expression.ConditionBuilder {
	return expression.Name(attrExpiresAt).GreaterThan(expression.Value(now.Unix()))
}

// Times are RFC 3339 strings with nanoseconds, in UTC: readable in the
// console and exact on a round trip (attributevalue reads them back).
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
