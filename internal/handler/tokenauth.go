package handler

import (
	"cmp"
	"context"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/config"
)

// tokenAuth returns an Authenticate func that requires a valid connect
// token in $connect's "token" query parameter (browsers cannot set headers
// on a WebSocket).
func tokenAuth(tokens *auth.Tokens) func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
	return func(_ context.Context, req events.APIGatewayWebsocketProxyRequest) (Grant, error) {
		c, err := tokens.Verify(req.QueryStringParameters["token"])
		if err != nil {
			return Grant{}, err
		}
		topics := c.Topics
		if topics == nil {
			// A token without a topics claim grants no topic; nil would
			// mean every topic.
			topics = []string{}
		}
		publish := c.Publish
		if publish == nil {
			// Nor does one without a publish claim grant any publish.
			publish = []string{}
		}
		return Grant{Subject: c.Subject, Topics: topics, Publish: publish}, nil
	}
}

// Configure applies the deployment's settings to the routes: connect
// tokens when CONNECT_TOKEN_SECRET is set (one loud warning when it is not)
// the subscription limit, the deadline of each route call, and what a
// recovering subscribe may replay (HISTORY_TTL, RECOVERY_MAX_MESSAGES).
// The devstack and the Lambdas share it, so both enforce the same things.
func (r *Routes) Configure(cfg config.Config) {
	r.MaxSubscriptions = cfg.MaxSubscriptions
	r.CallTimeout = cmp.Or(cfg.CallTimeout, DefaultCallTimeout)
	r.HistoryTTL = cfg.HistoryTTL
	r.RecoveryMaxMessages = cfg.RecoveryMaxMessages
	if cfg.ConnectTokenSecret == "" {
		r.Log.Warn("CONNECT AUTH IS OFF: CONNECT_TOKEN_SECRET is unset, so any client may connect and subscribe to any topic")
		return
	}
	r.Authenticate = tokenAuth(auth.NewTokens(cfg.ConnectTokenSecret, time.Now))
}
