// Command connect is the $connect route's Lambda: it records each new
// connection; refusing one (500) makes the client retry.
package main

import (
	"errors"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/internal/handler"
	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() {
	env := lambdaenv.Load("connect")
	if env.Config.ConnectTokenSecret != "" {
		// Until connect tokens are verified here, running with a secret
		// would admit everyone while the operator believes auth is on.
		lambdaenv.Exit(env.Log, errors.New("CONNECT_TOKEN_SECRET is set, but this build cannot verify connect tokens yet"))
	}
	env.Log.Warn("connect auth is off (CONNECT_TOKEN_SECRET unset): any client may connect and subscribe to any topic")
	lambda.Start(handler.NewRoutes(env.Store, env.Log).Connect)
}
