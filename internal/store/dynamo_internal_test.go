package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/dynalite"
)

// TestTableJSONMatchesCode keeps deploy/table.json (CloudFormation's
// AWS::DynamoDB::Table properties, for the SAM template) and the table
// EnsureTable creates the same.
func TestTableJSONMatchesCode(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../deploy/table.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var declared struct {
		BillingMode             types.BillingMode
		AttributeDefinitions    []types.AttributeDefinition
		KeySchema               []types.KeySchemaElement
		GlobalSecondaryIndexes  []types.GlobalSecondaryIndex
		TimeToLiveSpecification types.TimeToLiveSpecification
	}
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields() // a property the code does not create is drift too
	if err := dec.Decode(&declared); err != nil {
		t.Fatalf("deploy/table.json: %v", err)
	}

	code := createTableInput("any")
	for _, c := range []struct {
		name       string
		file, code any
	}{
		{"BillingMode", declared.BillingMode, code.BillingMode},
		{"AttributeDefinitions", declared.AttributeDefinitions, code.AttributeDefinitions},
		{"KeySchema", declared.KeySchema, code.KeySchema},
		{"GlobalSecondaryIndexes", declared.GlobalSecondaryIndexes, code.GlobalSecondaryIndexes},
	} {
		if !reflect.DeepEqual(c.file, c.code) {
			t.Errorf("%s differs:\ndeploy/table.json: %s\nschema.go:         %s", c.name, jsonString(c.file), jsonString(c.code))
		}
	}
	// CreateTable cannot set the TTL (nor can dynalite): only the file does.
	if ttl := declared.TimeToLiveSpecification; aws.ToString(ttl.AttributeName) != attrExpiresAt || !aws.ToBool(ttl.Enabled) {
		t.Errorf("TimeToLiveSpecification = %s, want %s enabled", jsonString(ttl), attrExpiresAt)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestNewDynamoDBClient(t *testing.T) {
	t.Parallel()
	cfg := aws.Config{Region: "us-east-1"}
	for _, endpoint := range []string{"", "http://127.0.0.1:4567"} {
		o := NewDynamoDBClient(cfg, endpoint).Options()
		if got := aws.ToString(o.BaseEndpoint); got != endpoint {
			t.Errorf("NewDynamoDBClient(%q): BaseEndpoint %q", endpoint, got)
		}
		client, ok := o.HTTPClient.(*awshttp.BuildableClient)
		if !ok {
			t.Fatalf("HTTPClient is a %T, want the SDK's buildable client", o.HTTPClient)
		}
		if got := client.GetTransport().MaxIdleConnsPerHost; got != maxIdleConnsPerHost {
			t.Errorf("MaxIdleConnsPerHost = %d, want %d", got, maxIdleConnsPerHost)
		}
		tr := client.GetTransport()
		if tr.ResponseHeaderTimeout != responseHeaderTimeout || tr.TLSHandshakeTimeout != tlsHandshakeTimeout {
			t.Errorf("ResponseHeaderTimeout %v, TLSHandshakeTimeout %v; want %v, %v", tr.ResponseHeaderTimeout, tr.TLSHandshakeTimeout, responseHeaderTimeout, tlsHandshakeTimeout)
		}
		if got := client.GetDialer().Timeout; got != dialTimeout {
			t.Errorf("dial timeout %v, want %v", got, dialTimeout)
		}
		if got := o.Retryer.MaxAttempts(); got != maxAttempts {
			t.Errorf("Retryer.MaxAttempts() = %d, want %d", got, maxAttempts)
		}
	}
	// A store that never answers fails a call after maxTimeoutAttempts
	// attempts of responseHeaderTimeout and the wait between them
	// (TestDynamoDBHungEndpointIsUnavailable shows it with shorter
	// timeouts): within CALL_TIMEOUT's default, or the caller would hear
	// its own deadline instead of ErrUnavailable.
	defaults, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if hung := maxTimeoutAttempts*responseHeaderTimeout + transientBackoffMax; hung >= defaults.CallTimeout {
		t.Errorf("a hung store fails a call after up to %v, not within CALL_TIMEOUT's default %v", hung, defaults.CallTimeout)
	}
	// AWS_MAX_ATTEMPTS, as config.LoadDefaultConfig reads it.
	cfg.RetryMaxAttempts = 2
	if got := NewDynamoDBClient(cfg, "").Options().Retryer.MaxAttempts(); got != 2 {
		t.Errorf("with RetryMaxAttempts 2: Retryer.MaxAttempts() = %d, want 2", got)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	throttled := &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
	refused := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	tests := []struct {
		attempt  int
		err      error
		min, max time.Duration
	}{
		{1, throttled, backoffBase / 2, backoffBase},
		{2, throttled, backoffBase, 2 * backoffBase},
		{7, throttled, throttleBackoffMax / 2, throttleBackoffMax},
		{100, throttled, throttleBackoffMax / 2, throttleBackoffMax}, // no overflow
		{1, refused, backoffBase / 2, backoffBase},
		{7, refused, transientBackoffMax / 2, transientBackoffMax},
		{0, refused, backoffBase / 2, backoffBase},
	}
	for _, tt := range tests {
		for range 100 {
			d, err := retryDelay(tt.attempt, tt.err)
			if err != nil || d < tt.min || d >= tt.max {
				t.Fatalf("retryDelay(%d, %v) = %v, %v; want [%v, %v)", tt.attempt, tt.err, d, err, tt.min, tt.max)
			}
		}
	}
}

// TestExpiredItemsAreFilteredOnRead checks the reads themselves hide expired
// items that DynamoDB has not deleted yet (dynalite never does).
func TestExpiredItemsAreFilteredOnRead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := NewDynamoDBClient(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, dynalite.Start(t).Endpoint())
	if err := EnsureTable(ctx, client, "expiry"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s := NewDynamoDB(client, "expiry", WithClock(func() time.Time { return now }))
	if err := s.PutConnection(ctx, Connection{ID: "c1", ConnectedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, "c1", "", []string{"a"}); err != nil {
		t.Fatal(err)
	}

	now = now.Add(MaxConnectionLifetime + TTLSlack)
	if _, err := s.GetConnection(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetConnection of an expired connection: %v, want ErrNotFound", err)
	}
	if page, err := s.Subscribers(ctx, "a", 10, ""); err != nil || len(page.Subscriptions) != 0 {
		t.Errorf("Subscribers of an expired subscription = %+v, %v; want none", page, err)
	}
	for _, key := range []map[string]types.AttributeValue{
		itemKey(connKey("c1"), connKey("c1")),
		itemKey(topicKey("a"), connKey("c1")),
	} {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("expiry"), Key: key})
		if err != nil || out.Item == nil {
			t.Errorf("GetItem(%v) = %v, %v; want the expired item still there", key, out, err)
		}
	}
}

// throttlingDB leaves the last few writes of a batch unprocessed the first
// times it is called, as DynamoDB does when a partition is throttled.
type throttlingDB struct {
	dynamoAPI          // nil: the store may call only BatchWriteItem here
	throttledCalls int // calls that leave writes unprocessed
	leave          int // writes left unprocessed by those calls

	mu      sync.Mutex
	calls   int
	deleted map[string]int // "pk/sk" → times deleted
}

func (db *throttlingDB) BatchWriteItem(_ context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls++
	var out dynamodb.BatchWriteItemOutput
	for table, writes := range in.RequestItems {
		if len(writes) > batchSize {
			return nil, fmt.Errorf("%d writes in one batch", len(writes))
		}
		done := writes
		if db.calls <= db.throttledCalls {
			cut := max(len(writes)-db.leave, 0)
			done = writes[:cut]
			out.UnprocessedItems = map[string][]types.WriteRequest{table: writes[cut:]}
		}
		for _, w := range done {
			var key itemKeys
			if err := attributevalue.UnmarshalMap(w.DeleteRequest.Key, &key); err != nil {
				return nil, err
			}
			db.deleted[key.PK+"/"+key.SK]++
		}
	}
	return &out, nil
}

func TestBatchWriteRetriesUnprocessedItems(t *testing.T) {
	t.Parallel()
	topics := make([]string, 30) // two batches: 25 and 5
	for i := range topics {
		topics[i] = fmt.Sprintf("t%02d", i)
	}
	tests := []struct {
		name           string
		throttledCalls int
		leave          int
		canceled       bool // the caller gave up before the call
		wantErr        error
		wantCalls      int
		wantDeleted    int
	}{
		{"all processed", 0, 0, false, nil, 2, 30},
		{"retried until processed", 3, 4, false, nil, 5, 30},
		{"gives up", 100, 4, false, ErrUnavailable, batchAttempts, 21},
		{"stops when the caller does", 100, 4, true, context.Canceled, 1, 21},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := &throttlingDB{throttledCalls: tt.throttledCalls, leave: tt.leave, deleted: map[string]int{}}
			s := &DynamoDB{db: db, table: "t", now: time.Now}
			ctx, cancel := context.WithCancel(t.Context())
			if tt.canceled {
				cancel()
			}
			defer cancel()
			err := s.Unsubscribe(ctx, "c1", topics)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Unsubscribe error = %v, want %v", err, tt.wantErr)
			}
			if db.calls != tt.wantCalls {
				t.Errorf("BatchWriteItem called %d times, want %d", db.calls, tt.wantCalls)
			}
			if len(db.deleted) != tt.wantDeleted {
				t.Errorf("%d items deleted, want %d", len(db.deleted), tt.wantDeleted)
			}
			for key, n := range db.deleted {
				if n != 1 || !strings.HasSuffix(key, "/"+connKey("c1")) {
					t.Errorf("%s deleted %d times, want once and only c1's", key, n)
				}
			}
		})
	}
}

// itemDB records the items PutItem is given, which PutConnection sends
// concurrently.
type itemDB struct {
	dynamoAPI // nil: the store may call only PutItem here
	mu        sync.Mutex
	items     []map[string]types.AttributeValue
}

func (db *itemDB) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.items = append(db.items, in.Item)
	return &dynamodb.PutItemOutput{}, nil
}

// TestConnectionItemLayout pins a connection's items attribute by
// attribute: the table outlives any version of the code, and items written
// by one must read the same in the next. A connection with a user also
// writes its membership in the user's partition.
func TestConnectionItemLayout(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600))
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	exp := &types.AttributeValueMemberN{Value: fmt.Sprint(expiresAt(now))}
	for _, tc := range []struct {
		name string
		conn Connection
		want []map[string]types.AttributeValue
	}{
		{"every attribute", Connection{ID: "c1", ConnectedAt: now, Subject: "u", SourceIP: "192.0.2.1", UserAgent: "ua", AllowedTopics: []string{"a", "b*"}},
			[]map[string]types.AttributeValue{{
				"pk": s("conn#c1"), "sk": s("conn#c1"), "expiresAt": exp,
				"connectedAt": s("2026-01-02T02:04:05.0000006Z"),
				"subject":     s("u"), "sourceIp": s("192.0.2.1"), "userAgent": s("ua"),
				"allowedTopics": &types.AttributeValueMemberL{Value: []types.AttributeValue{s("a"), s("b*")}},
			}, {
				// The membership: found by the user's partition, and by
				// the connection's sk in byConnection.
				"pk": s("user#u"), "sk": s("conn#c1"), "expiresAt": exp,
			}}},
		{"empty values left out, no topic allowed", Connection{ID: "c2", AllowedTopics: []string{}},
			[]map[string]types.AttributeValue{{
				"pk": s("conn#c2"), "sk": s("conn#c2"), "expiresAt": exp,
				"allowedTopics": &types.AttributeValueMemberL{Value: []types.AttributeValue{}},
			}}},
		{"any topic allowed", Connection{ID: "c3"},
			[]map[string]types.AttributeValue{{"pk": s("conn#c3"), "sk": s("conn#c3"), "expiresAt": exp}}},
	} {
		db := &itemDB{}
		st := &DynamoDB{db: db, table: "t", now: func() time.Time { return now }}
		if err := st.PutConnection(t.Context(), tc.conn); err != nil {
			t.Fatal(err)
		}
		// The puts are concurrent: order the items as want does.
		slices.SortFunc(db.items, func(a, b map[string]types.AttributeValue) int {
			return strings.Compare(a["pk"].(*types.AttributeValueMemberS).Value, b["pk"].(*types.AttributeValueMemberS).Value)
		})
		if !reflect.DeepEqual(db.items, tc.want) {
			t.Errorf("%s: items\n%#v\nwant\n%#v", tc.name, db.items, tc.want)
		}
	}
}

// TestStreamItemLayout pins the streams' items attribute by attribute, as
// TestConnectionItemLayout does a connection's, on the items DynamoDB (here
// dynalite) really holds.
func TestStreamItemLayout(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := NewDynamoDBClient(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, dynalite.Start(t).Endpoint())
	if err := EnsureTable(ctx, client, "layout"); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	st := NewDynamoDB(client, "layout", WithClock(func() time.Time { return now }))
	pos, err := st.NextPosition(ctx, "a#b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Retain(ctx, "a#b", pos, Retained{Offset: 1, Envelope: []byte(`{"m":1}`)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve(ctx, "a#b", "k#1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve(ctx, "a#b", "pending"); err != nil {
		t.Fatal(err)
	}
	if err := st.Complete(ctx, "a#b", "k#1", Outcome{MessageID: "m1", Position: pos}); err != nil {
		t.Fatal(err)
	}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v int64) types.AttributeValue { return &types.AttributeValueMemberN{Value: fmt.Sprint(v)} }
	// Kept a whole second more, never a fraction less: 05.0000006 + d
	// rounds up to 06 + d.
	until := func(d time.Duration) types.AttributeValue {
		return n(now.Truncate(time.Second).Add(d + time.Second).Unix())
	}
	for _, want := range []map[string]types.AttributeValue{
		{"pk": s("pos#a#b"), "sk": s("pos#a#b"), "offset": n(1), "epoch": s(pos.Epoch), "expiresAt": until(time.Hour)},
		{"pk": s("hist#a#b"), "sk": s("hist#a#b#00000000000000000001"), "epoch": s(pos.Epoch),
			"envelope": &types.AttributeValueMemberB{Value: []byte(`{"m":1}`)}, "expiresAt": until(time.Minute)},
		// k#1 in base64url: the topic's '#' cannot be mistaken for the key's.
		{"pk": s("idem#a#b#ayMx"), "sk": s("idem#a#b#ayMx"), "state": s("done"), "messageId": s("m1"),
			"epoch": s(pos.Epoch), "offset": n(1), "expiresAt": until(IdempotencyWindow)},
		{"pk": s("idem#a#b#cGVuZGluZw"), "sk": s("idem#a#b#cGVuZGluZw"), "state": s("pending"), "expiresAt": until(IdempotencyWindow)},
	} {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("layout"), Key: map[string]types.AttributeValue{"pk": want["pk"], "sk": want["sk"]}})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out.Item, want) {
			t.Errorf("item\n%#v\nwant\n%#v", out.Item, want)
		}
	}
}
