package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/poll"
	"github.com/wsgateway/wsgateway/internal/store"
)

// TestDrainOnSIGTERM sends SIGTERM to the real publisher process while a
// fan-out is in flight: it must stop accepting at once, finish the publish,
// and exit 0.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	const subscribers = 200
	ctx := context.Background()

	db := dynalite.Start(t)
	awsCfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	client := store.NewDynamoDBClient(awsCfg, db.Endpoint())
	if err := store.EnsureTable(ctx, client, "drain"); err != nil {
		t.Fatal(err)
	}
	st := store.NewDynamoDB(client, "drain")

	// The management API holds every post until the test lets go, so the
	// publish is certainly in flight when SIGTERM arrives.
	emu := emulator.New(emulator.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	postArrived, release := make(chan struct{}), make(chan struct{})
	var arrived sync.Once
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			arrived.Do(func() { close(postArrived) })
			<-release
		}
		emu.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { emu.Close(); api.Close() })

	browsers := make([]*websocket.Conn, subscribers)
	for i := range browsers {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(api.URL, "http")+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		browsers[i] = c
	}
	for _, id := range emu.ConnectionIDs() {
		if err := st.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := st.Subscribe(ctx, id, "", []string{"big"}); err != nil {
			t.Fatal(err)
		}
	}

	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{
		"PUBLISHER_MAIN_ARGS=", "HOME=" + t.TempDir(),
		"GRPC_ADDR=" + grpcAddr, "HTTP_ADDR=" + httpAddr, "TABLE_NAME=drain",
		"DYNAMODB_ENDPOINT=" + db.Endpoint(), "APIGW_ENDPOINT=" + api.URL,
		"AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local", "AWS_REGION=us-east-1",
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("publisher stderr:\n%s", stderr.String())
		}
	})

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	poll.Until(t, 20*time.Second, "the publisher to serve", func() bool {
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})

	type outcome struct {
		res *wsgatewayv1.PublishResponse
		err error
	}
	published := make(chan outcome, 1)
	go func() {
		res, err := wsgatewayv1.NewPublisherServiceClient(conn).Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "big", Data: structpb.NewStringValue("drain me")})
		published <- outcome{res, err}
	}()
	select {
	case <-postArrived:
	case o := <-published:
		t.Fatalf("publish ended before any post: %v %v", o.res, o.err)
	case <-time.After(20 * time.Second):
		t.Fatal("no post reached the management API")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Stops accepting: the listeners close while the publish still waits.
	poll.Until(t, 20*time.Second, "the HTTP listener to close", func() bool {
		c, err := net.DialTimeout("tcp", httpAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-exited:
		t.Fatalf("publisher exited (%v) with a publish in flight", err)
	case o := <-published:
		t.Fatalf("publish ended (%v %v) before its posts were released", o.res, o.err)
	default:
	}

	close(release)
	o := <-published
	if o.err != nil || o.res.GetDelivered() != subscribers || o.res.GetFailed() != 0 {
		t.Fatalf("in-flight publish = %v, %v; want all %d delivered", o.res, o.err, subscribers)
	}
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) || err != nil {
			t.Fatalf("publisher exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("publisher did not exit after draining")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
