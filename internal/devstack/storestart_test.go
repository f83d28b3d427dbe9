package devstack_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/devstack"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/poll"
	"github.com/wsgateway/wsgateway/internal/store"
)

func dynamoEnv(db *dynalite.Server, table string) map[string]string {
	return map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"DYNAMODB_ENDPOINT": db.Endpoint(), "TABLE_NAME": table,
	}
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, e *e2e) (int, string) {
	t.Helper()
	resp, err := http.Get(e.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// `npx dynalite --port 8000 & DYNAMODB_ENDPOINT=… make run` starts both at
// once: the devstack must wait for a DynamoDB that comes up after it.
func TestDevstackWaitsForTheStore(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	db.Stop()
	cfg, err := config.Load(func(k string) string { return dynamoEnv(db, "late")[k] })
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		stack *devstack.Stack
		err   error
	}
	started := make(chan result, 1)
	waits := waitNotes(make(chan struct{}, 16))
	begin := time.Now()
	go func() {
		s, err := devstack.New(t.Context(), cfg, slog.New(waits))
		started <- result{s, err}
	}()
	// The store comes up once New has said twice that it waits for it,
	// so has tried again after a failed try, and a second has passed:
	// twice the old give-up of one call of half a second, well inside the
	// wait. Counting New's tries, not only the time, holds on a machine
	// too busy to finish one call within the second.
	for n := 0; n < 2; {
		select {
		case <-waits:
			n++
		case r := <-started:
			t.Fatalf("New returned before the store was up, after %d notes that it waits: %v", n, r.err)
		case <-time.After(eventually):
			t.Fatalf("New logged %d notes that it waits for the store within %v, want 2", n, eventually)
		}
	}
	time.Sleep(time.Until(begin.Add(time.Second)))
	select {
	case r := <-started:
		t.Fatalf("New returned before the store was up: %v", r.err)
	default:
	}
	db.Restart()
	r := <-started
	if r.err != nil {
		t.Fatalf("New with a store that came up late: %v", r.err)
	}
	if err := r.stack.Store.Ping(t.Context()); err != nil {
		t.Errorf("the table is not there: %v", err)
	}
}

// waitNotes is a log handler that notes each of New's warnings that it
// waits for DynamoDB (a warning numbering its attempt: the record's
// fields, not its wording), and drops the rest.
type waitNotes chan struct{}

func (w waitNotes) Enabled(context.Context, slog.Level) bool { return true }
func (w waitNotes) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w waitNotes) WithGroup(string) slog.Handler            { return w }

func (w waitNotes) Handle(_ context.Context, r slog.Record) error {
	attempt := false
	r.Attrs(func(a slog.Attr) bool {
		attempt = attempt || a.Key == "attempt"
		return !attempt
	})
	if r.Level == slog.LevelWarn && attempt {
		select {
		case w <- struct{}{}:
		default: // enough noted
		}
	}
	return nil
}

func TestDevstackGivesUpOnAnAbsentStore(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	db.Stop()
	cfg, err := config.Load(func(k string) string { return dynamoEnv(db, "never")[k] })
	if err != nil {
		t.Fatal(err)
	}
	// The caller's deadline stands in for StoreWait, which is too long for
	// a test; a second takes New through a failed call, a wait and a try
	// again.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err = devstack.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Fatal("New succeeded with no store")
	}
	if !strings.Contains(err.Error(), "DYNAMODB_ENDPOINT") {
		t.Errorf("error %q does not point at DYNAMODB_ENDPOINT", err)
	}
}

// A dynalite without --path keeps tables in memory: restarting it under a
// running devstack loses the table. /readyz says so, and the devstack
// creates the table again rather than staying unready.
func TestDevstackRecreatesALostTable(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	e := start(t, dynamoEnv(db, "lost"))
	if code, body := readyz(t, e); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q before the loss", code, body)
	}

	// Our dynalite keeps its data across Restart, so drop the table too.
	client := store.NewDynamoDBClient(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("t", "t", "")}, db.Endpoint())
	if _, err := client.DeleteTable(t.Context(), &dynamodb.DeleteTableInput{TableName: aws.String("lost")}); err != nil {
		t.Fatal(err)
	}
	// dynalite deletes in the background; a restart before it is done
	// would keep the table.
	poll.Until(t, eventually, "the table deleted", func() bool {
		_, err := client.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String("lost")})
		var missing *types.ResourceNotFoundException
		return errors.As(err, &missing)
	})
	db.Restart()

	var sawMissing bool
	poll.Until(t, eventually, "/readyz to say the table is missing", func() bool {
		code, body := readyz(t, e)
		sawMissing = code == http.StatusServiceUnavailable && strings.Contains(body, "table not found")
		return sawMissing
	})
	poll.Until(t, eventually, "/readyz ok again", func() bool {
		code, _ := readyz(t, e)
		return code == http.StatusOK
	})
	if err := e.stack.Store.Subscribe(t.Context(), "c1", "", []string{"a"}); err != nil {
		t.Errorf("Subscribe on the re-created table: %v", err)
	}
}
