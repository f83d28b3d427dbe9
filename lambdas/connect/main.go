// Command connect is the $connect route's Lambda: it verifies the connect
// token (when CONNECT_TOKEN_SECRET is set) and records each new connection;
// refusing one (401, or 500 on a store failure) makes the client retry.
package main

import (
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/handler"
	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() {
	env := lambdaenv.Load("connect")
	routes := handler.NewRoutes(env.Store, env.Log)
	if secret := env.Config.ConnectTokenSecret; secret != "" {
		routes.Authenticate = handler.TokenAuth(auth.NewTokens(secret, time.Now))
	} else {
		env.Log.Warn("CONNECT AUTH IS OFF: CONNECT_TOKEN_SECRET is unset, so any client may connect and subscribe to any topic")
	}
	lambda.Start(routes.Connect)
}
