package handler

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/store"
)

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tokens := auth.NewTokens("connect-secret-0123456789", func() time.Time { return now })
	mint := func(topics []string) string {
		tok, err := tokens.Mint("alice", topics, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	check := tokenAuth(tokens)
	req := func(token string) events.APIGatewayWebsocketProxyRequest {
		return events.APIGatewayWebsocketProxyRequest{QueryStringParameters: map[string]string{"token": token}}
	}

	g, err := check(context.Background(), req(mint([]string{"orders.*"})))
	if err != nil || g.Subject != "alice" || len(g.Topics) != 1 || g.Topics[0] != "orders.*" {
		t.Errorf("valid token: %+v, %v", g, err)
	}
	// No topics claim must grant nothing, not everything.
	g, err = check(context.Background(), req(mint(nil)))
	if err != nil || g.Topics == nil || allowed(g.Topics, "anything") {
		t.Errorf("token without topics: %+v, %v; want a grant of no topic", g, err)
	}
	if _, err := check(context.Background(), events.APIGatewayWebsocketProxyRequest{}); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("no token: %v, want ErrInvalidToken", err)
	}
}

// A validly signed token whose sub cannot be a user id is refused at
// $connect, as a bad token is, and nothing is stored; a good one makes
// the connection its sub's.
func TestTokenSubIsTheUser(t *testing.T) {
	t.Parallel()
	const secret = "connect-secret-0123456789"
	tokens := auth.NewTokens(secret, time.Now)
	for _, tc := range []struct {
		name, sub  string
		wantStatus int
	}{
		{"a user", "alice@example.com", http.StatusOK},
		{"too long", strings.Repeat("a", store.MaxUserIDLen+1), http.StatusUnauthorized},
		{"a control character", "alice\x00", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			mem := store.NewMemory()
			r := NewRoutes(mem, discard())
			r.Configure(config.Config{ConnectTokenSecret: secret})
			tok, err := tokens.Mint(tc.sub, []string{"news"}, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			ev := decodeEvent(t, connectEvent)
			ev.QueryStringParameters = map[string]string{"token": tok}
			resp, err := r.Connect(ctx, ev)
			if err != nil || resp.StatusCode != tc.wantStatus {
				t.Fatalf("Connect = %d, %v; want %d", resp.StatusCode, err, tc.wantStatus)
			}
			c, err := mem.GetConnection(ctx, connID)
			if tc.wantStatus != http.StatusOK {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("refused, yet stored %+v (%v)", c, err)
				}
				return
			}
			if err != nil || c.Subject != tc.sub {
				t.Fatalf("stored %+v, %v; want user %q", c, err, tc.sub)
			}
			if page, err := mem.UserConnections(ctx, tc.sub, 10, ""); err != nil || !slices.Equal(page.ConnectionIDs, []string{connID}) {
				t.Errorf("UserConnections(%q) = %+v, %v; want the connection", tc.sub, page, err)
			}
		})
	}
}
