package dynalite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgateway/wsgateway/internal/dynalite"
)

func client(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(endpoint),
		// Fail fast while the server is stopped.
		Retryer: aws.NopRetryer{},
	})
}

func TestStopRestartKeepsData(t *testing.T) {
	t.Parallel()
	srv := dynalite.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	db := client(srv.Endpoint())

	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("kept"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	// dynalite marks the table ACTIVE just after answering; a kill before
	// that would leave it CREATING.
	waiter := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 100*time.Millisecond
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("kept")}, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	endpoint := srv.Endpoint()
	srv.Stop()
	srv.Stop() // idempotent
	// Refused, as by a DynamoDB that cannot be reached, not answered by the
	// proxy with an error of its own.
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("ListTables while the server was stopped: %v, want the connection refused", err)
	}

	srv.Restart()
	if srv.Endpoint() != endpoint {
		t.Errorf("Endpoint() = %s after Restart, want %s as before", srv.Endpoint(), endpoint)
	}
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("kept")})
	if err != nil {
		t.Fatalf("DescribeTable after restart: %v", err)
	}
	if out.Table.TableStatus != types.TableStatusActive {
		t.Errorf("table status after restart = %s, want ACTIVE", out.Table.TableStatus)
	}
}

func TestServersAreIndependent(t *testing.T) {
	t.Parallel()
	a, b := dynalite.Start(t), dynalite.Start(t)
	if a.Endpoint() == b.Endpoint() {
		t.Fatalf("both servers listen on %s", a.Endpoint())
	}
	if !strings.HasPrefix(a.Endpoint(), "http://127.0.0.1:") {
		t.Errorf("Endpoint() = %q, want a loopback URL", a.Endpoint())
	}
	ctx := t.Context()
	if _, err := client(a.Endpoint()).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("only-in-a"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	out, err := client(b.Endpoint()).ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.TableNames) != 0 {
		t.Errorf("server b lists %v, want no tables", out.TableNames)
	}
}

// fatalRecorder captures Fatalf instead of failing the real test.
type fatalRecorder struct {
	*testing.T
	msg string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestStartWithoutNodeModulesSaysHowToFix(t *testing.T) {
	// A module root without node_modules: what a fresh clone looks like
	// before `npm ci`.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	rec := &fatalRecorder{T: t}
	done := make(chan *dynalite.Server)
	go func() {
		var srv *dynalite.Server
		defer func() { done <- srv }()
		srv = dynalite.Start(rec)
	}()
	if srv := <-done; srv != nil {
		t.Fatalf("Start returned a server at %s without node_modules", srv.Endpoint())
	}
	if !strings.Contains(rec.msg, "npm ci") {
		t.Errorf("Start failed with %q, want the fix (`npm ci`) in the message", rec.msg)
	}
}

// The SDK must read the proxy's answers as it reads DynamoDB's: the typed
// error, a 400, and a throttle by its own rules (those its retryer uses).
func TestThrottleAnswersAsDynamoDB(t *testing.T) {
	t.Parallel()
	srv := dynalite.Start(t)
	db := client(srv.Endpoint())
	for _, tt := range []struct {
		name      string
		errorType dynalite.ErrorType
		asTyped   func(error) bool
	}{
		{"ProvisionedThroughputExceeded", dynalite.ProvisionedThroughputExceeded, func(err error) bool {
			var e *types.ProvisionedThroughputExceededException
			return errors.As(err, &e) && e.ErrorMessage() != ""
		}},
		{"Throttling", dynalite.Throttling, func(err error) bool {
			var e *types.ThrottlingException
			return errors.As(err, &e) && e.ErrorMessage() != ""
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.Throttle(1, tt.errorType)
			_, err := db.ListTables(t.Context(), &dynamodb.ListTablesInput{})
			if !tt.asTyped(err) {
				t.Errorf("error %v (%T), want the SDK's typed error with DynamoDB's message", err, errors.Unwrap(err))
			}
			var resp *awshttp.ResponseError
			if !errors.As(err, &resp) || resp.HTTPStatusCode() != 400 || resp.ServiceRequestID() == "" {
				t.Errorf("error %v, want an HTTP 400 with a request id", err)
			}
			if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
				t.Errorf("the SDK does not count %v as a throttle", err)
			}

			srv.Throttle(0, "")
			if _, err := db.ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
				t.Errorf("ListTables once throttling stopped: %v", err)
			}
		})
	}
}

// Which requests are throttled is the same on every run, so tests that
// count on it do not flake.
func TestThrottlingIsDeterministic(t *testing.T) {
	t.Parallel()
	srv := dynalite.Start(t)
	db := client(srv.Endpoint())
	tests := []struct {
		name     string
		fraction float64
		burst    int
		// x: ProvisionedThroughputExceeded (Throttle), b: Throttling
		// (ThrottleNext), .: forwarded
		want string
	}{
		{"none", 0, 0, "........"},
		{"every other", 0.5, 0, ".x.x.x.x"},
		{"one in four", 0.25, 0, "...x...x"},
		{"all", 1, 0, "xxxxxxxx"},
		{"a burst", 0, 3, "bbb....."},
		{"a burst, then every other", 0.5, 2, "bb.x.x.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Subtests share the server, so they run one at a time.
			srv.Throttle(tt.fraction, dynalite.ProvisionedThroughputExceeded)
			if tt.burst > 0 {
				srv.ThrottleNext(tt.burst, dynalite.Throttling)
			}
			before := srv.Throttled()
			var got strings.Builder
			for range len(tt.want) {
				_, err := db.ListTables(t.Context(), &dynamodb.ListTablesInput{})
				var throttled *types.ProvisionedThroughputExceededException
				var burst *types.ThrottlingException
				switch {
				case err == nil:
					got.WriteByte('.')
				case errors.As(err, &throttled):
					got.WriteByte('x')
				case errors.As(err, &burst):
					got.WriteByte('b')
				default:
					t.Fatalf("request %d: %v", got.Len()+1, err)
				}
			}
			if got.String() != tt.want {
				t.Errorf("requests went %s, want %s", got.String(), tt.want)
			}
			if n, want := srv.Throttled()-before, len(tt.want)-strings.Count(tt.want, "."); n != want {
				t.Errorf("Throttled() grew by %d, want %d", n, want)
			}
		})
	}
}

// A knob set wrong fails the test and leaves the proxy as it was.
func TestThrottleRefusesBadSettings(t *testing.T) {
	t.Parallel()
	rec := &fatalRecorder{T: t}
	srv := dynalite.Start(rec)
	db := client(srv.Endpoint())
	for _, tt := range []struct {
		name string
		set  func()
		want string
	}{
		{"fraction above 1", func() { srv.Throttle(1.5, dynalite.Throttling) }, "between 0 and 1"},
		{"negative fraction", func() { srv.Throttle(-0.1, dynalite.Throttling) }, "between 0 and 1"},
		{"no error", func() { srv.Throttle(0.5, "") }, "name the error"},
		{"negative burst", func() { srv.ThrottleNext(-1, dynalite.Throttling) }, "n >= 0"},
		{"burst without error", func() { srv.ThrottleNext(2, "") }, "an error to answer with"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec.msg = ""
			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.set()
			}()
			<-done
			if !strings.Contains(rec.msg, tt.want) {
				t.Errorf("failed the test with %q, want a message saying %q", rec.msg, tt.want)
			}
			if _, err := db.ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
				t.Errorf("ListTables after a refused setting: %v, want it forwarded", err)
			}
		})
	}
	if n := srv.Throttled(); n != 0 {
		t.Errorf("Throttled() = %d, want 0", n)
	}
}
