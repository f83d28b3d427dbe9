// Command default is the $default route's Lambda: it answers frames no route
// matched with an error frame that says why (and ping with pong, should the
// ping route be missing).
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() { lambda.Start(lambdaenv.Routes("default").Default) }
