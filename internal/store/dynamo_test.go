package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/store/storetest"
)

// testConfig is what a Lambda gets from the environment, with fixed
// credentials: dynalite checks that requests are signed, not by whom.
func testConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

var tables atomic.Int64

// newTable creates a table of its own for one test.
func newTable(t *testing.T, client *dynamodb.Client) string {
	t.Helper()
	name := fmt.Sprintf("wsgateway-%d", tables.Add(1))
	if err := store.EnsureTable(t.Context(), client, name); err != nil {
		t.Fatalf("EnsureTable(%s): %v", name, err)
	}
	return name
}

func TestDynamoDB(t *testing.T) {
	t.Parallel()
	client := store.NewDynamoDBClient(testConfig(), dynalite.Start(t).Endpoint())
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return store.NewDynamoDB(client, newTable(t, client), store.WithClock(now))
	})
}

func TestEnsureTable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := store.NewDynamoDBClient(testConfig(), dynalite.Start(t).Endpoint())

	table := newTable(t, client)
	s := store.NewDynamoDB(client, table)
	if err := s.Subscribe(ctx, "c1", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureTable(ctx, client, table); err != nil {
		t.Fatalf("EnsureTable on an existing table: %v", err)
	}
	if topics, err := s.Topics(ctx, "c1"); err != nil || len(topics) != 1 {
		t.Errorf("after EnsureTable again: Topics = %q, %v; want the subscription kept", topics, err)
	}

	// A table of the same name keyed another way, like the seed's.
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("seed"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("connectionId"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("connectionId"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureTable(ctx, client, "seed"); err == nil || !strings.Contains(err.Error(), "other keys") {
		t.Errorf("EnsureTable on a foreign table = %v, want an error about its keys", err)
	}
}

// everyMethod calls each Store method once.
var everyMethod = []struct {
	name string
	call func(context.Context, store.Store) error
}{
	{"PutConnection", func(ctx context.Context, s store.Store) error {
		return s.PutConnection(ctx, store.Connection{ID: "c2", ConnectedAt: time.Now()})
	}},
	{"GetConnection", func(ctx context.Context, s store.Store) error { _, err := s.GetConnection(ctx, "c1"); return err }},
	{"DeleteConnection", func(ctx context.Context, s store.Store) error { return s.DeleteConnection(ctx, "c1") }},
	{"Subscribe", func(ctx context.Context, s store.Store) error { return s.Subscribe(ctx, "c1", []string{"b", "c"}) }},
	{"Unsubscribe", func(ctx context.Context, s store.Store) error { return s.Unsubscribe(ctx, "c1", []string{"a"}) }},
	{"Subscribers", func(ctx context.Context, s store.Store) error { _, err := s.Subscribers(ctx, "a", 10, ""); return err }},
	{"Topics", func(ctx context.Context, s store.Store) error { _, err := s.Topics(ctx, "c1"); return err }},
	{"Ping", func(ctx context.Context, s store.Store) error { return s.Ping(ctx) }},
}

func TestDynamoDBDeadEndpointIsUnavailable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	// Without retries for the table of methods; with the SDK's standard
	// retries for one call, as in production.
	noRetries := testConfig()
	noRetries.RetryMaxAttempts = 1
	s := store.NewDynamoDB(store.NewDynamoDBClient(noRetries, dead), "wsgateway")
	for _, m := range everyMethod {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := m.call(ctx, s); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error %v, want ErrUnavailable", err)
			}
		})
	}
	t.Run("StandardRetries", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		s := store.NewDynamoDB(store.NewDynamoDBClient(testConfig(), dead), "wsgateway")
		err := s.Ping(ctx)
		if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want ErrUnavailable before the deadline", err)
		}
	})
}

func TestDynamoDBOutageAndRecovery(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := dynalite.Start(t)
	cfg := testConfig()
	cfg.RetryMaxAttempts = 1
	client := store.NewDynamoDBClient(cfg, srv.Endpoint())
	s := store.NewDynamoDB(client, newTable(t, client))
	if err := s.PutConnection(ctx, store.Connection{ID: "c1", ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, "c1", []string{"a"}); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	for _, m := range everyMethod {
		if err := m.call(ctx, s); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while DynamoDB is down: error %v, want ErrUnavailable", m.name, err)
		}
	}

	srv.Restart()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	if _, err := s.GetConnection(ctx, "c1"); err != nil {
		t.Errorf("GetConnection after restart: %v", err)
	}
	if topics, err := s.Topics(ctx, "c1"); err != nil || len(topics) != 1 {
		t.Errorf("Topics after restart = %q, %v; want [a]", topics, err)
	}
}

func TestDynamoDBMissingTableIsNotUnavailable(t *testing.T) {
	t.Parallel()
	client := store.NewDynamoDBClient(testConfig(), dynalite.Start(t).Endpoint())
	s := store.NewDynamoDB(client, "no-such-table")
	err := s.Ping(t.Context())
	var missing *types.ResourceNotFoundException
	if !errors.As(err, &missing) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping on a missing table: error %v, want ResourceNotFoundException, not ErrUnavailable (a fault to fix, not to retry)", err)
	}
}
