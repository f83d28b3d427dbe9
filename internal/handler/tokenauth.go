package handler

import (
	"context"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/auth"
)

// TokenAuth returns an Authenticate func that requires a valid connect
// token in $connect's "token" query parameter (browsers cannot set headers
// on a WebSocket).
func TokenAuth(tokens *auth.Tokens) func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
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
		return Grant{Subject: c.Subject, Topics: topics}, nil
	}
}
