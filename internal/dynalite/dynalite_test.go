package dynalite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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

	srv.Stop()
	srv.Stop() // idempotent
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err == nil {
		t.Fatal("ListTables succeeded while the server was stopped")
	}

	srv.Restart()
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
