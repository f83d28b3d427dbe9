package handler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/auth"
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
