package devstack_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/auth"
)

const (
	testAPIKey = "key-for-tests-only"
	testSecret = "connect-secret-for-tests-0123456789"
)

// TestAuth runs the stack with both credentials enforced: API keys for
// publishers, connect tokens for browsers.
func TestAuth(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"API_KEYS": "other-key," + testAPIKey, "CONNECT_TOKEN_SECRET": testSecret,
	})
	tokens := auth.NewTokens(testSecret, time.Now)
	mint := func(topics ...string) string {
		tok, err := tokens.Mint("alice", topics, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	withKey := func(key string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
	}

	t.Run("publishers need an API key", func(t *testing.T) {
		req := &wsgatewayv1.PublishRequest{Topic: "orders.eu", Data: one()}
		for name, ctx := range map[string]context.Context{
			"no key":     context.Background(),
			"wrong key":  withKey("guess"),
			"not bearer": metadata.AppendToOutgoingContext(context.Background(), "authorization", testAPIKey),
		} {
			_, err := e.grpc.Publish(ctx, req)
			if status.Code(err) != codes.Unauthenticated || strings.Contains(status.Convert(err).Message(), testAPIKey) {
				t.Errorf("%s: Publish = %v, want Unauthenticated without naming keys", name, err)
			}
			_, err = e.grpc.ListSubscribers(ctx, &wsgatewayv1.ListSubscribersRequest{Topic: "orders.eu"})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s: ListSubscribers = %v, want Unauthenticated", name, err)
			}
		}
		if _, err := e.grpc.Publish(withKey(testAPIKey), req); err != nil {
			t.Errorf("Publish with the key: %v", err)
		}

		// REST goes through the same check.
		for header, want := range map[string]int{"": 401, "Bearer guess": 401, "Bearer " + testAPIKey: 200} {
			r, _ := http.NewRequest(http.MethodPost, e.http+"/v1/topics/orders.eu:publish", strings.NewReader(`{"data":1}`))
			if header != "" {
				r.Header.Set("Authorization", header)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("REST publish with Authorization %q = %d, want %d", header, resp.StatusCode, want)
			}
		}
	})

	// Reflection is open too: grpcurl needs it to resolve even the health
	// check, and it reveals only the public schema.
	t.Run("health and reflection stay open", func(t *testing.T) {
		conn, err := grpc.NewClient(e.stack.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		res, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health check without a key = %v, %v; want SERVING", res, err)
		}
		for name, ctx := range map[string]context.Context{"without a key": context.Background(), "with the key": withKey(testAPIKey)} {
			stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			if err == nil {
				// A refused stream may already be closed when Send runs
				// (io.EOF); Recv reports the status either way.
				stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
				_, err = stream.Recv()
			}
			if err != nil {
				t.Errorf("reflection %s: %v", name, err)
			}
		}
	})

	t.Run("browsers need a valid connect token", func(t *testing.T) {
		expired, err := tokens.Mint("alice", []string{"*"}, time.Hour, time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		forged, _ := auth.NewTokens("some-other-secret-0123456789", time.Now).Mint("mallory", []string{"*"}, time.Hour, time.Now())
		for name, token := range map[string]string{"none": "", "garbage": "abc", "expired": expired, "other secret": forged} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn, resp, err := websocket.Dial(ctx, "ws://"+e.stack.WSAddr+"/?token="+url.QueryEscape(token), nil)
			cancel()
			if err == nil {
				conn.CloseNow()
				t.Errorf("token %s: connected", name)
				continue
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("token %s: %v, want the handshake refused with 401", name, err)
			}
		}
		if ids := e.stack.Emulator.ConnectionIDs(); len(ids) != 0 {
			t.Errorf("refused handshakes left connections %v", ids)
		}
	})

	t.Run("a token bounds what a connection may subscribe to", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, "ws://"+e.stack.WSAddr+"/?token="+mint("orders.*", "news"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.CloseNow() })
		c := &client{conn: conn}
		c.send(t, `{"action":"subscribe","topics":["orders.eu","news"]}`)
		c.expectSubscribed(t, "orders.eu", "news")
		for _, frame := range []string{
			`{"action":"subscribe","topics":["sports"]}`,
			`{"action":"subscribe","topics":["orders.us","newsletter"]}`, // one outside: all refused
			`{"action":"subscribe","topic":"orders"}`,                    // "orders.*" is a prefix with the dot
		} {
			c.send(t, frame)
			if f := c.next(t); f["type"] != "error" || f["code"] != "forbidden" {
				t.Errorf("%s → %v, want a forbidden error frame", frame, f)
			}
		}
		ctxKey := withKey(testAPIKey)
		for _, topic := range []string{"sports", "orders.us", "newsletter", "orders"} {
			res, err := e.grpc.ListSubscribers(ctxKey, &wsgatewayv1.ListSubscribersRequest{Topic: topic})
			if err != nil || len(res.Subscribers) != 0 {
				t.Errorf("subscribers of %s = %v, %v; a forbidden subscribe stored something", topic, res, err)
			}
		}
		res, err := e.grpc.Publish(ctxKey, &wsgatewayv1.PublishRequest{Topic: "orders.eu", Data: one()})
		if err != nil || res.Delivered != 1 {
			t.Fatalf("Publish(orders.eu) = %v, %v; want 1 delivered", res, err)
		}
		c.expectMessage(t, "orders.eu", res.MessageId, `1`, nil)
	})
}
