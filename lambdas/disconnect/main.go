// Command disconnect is the $disconnect route's Lambda: it forgets a closed
// connection and its subscriptions.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() { lambda.Start(lambdaenv.Routes("disconnect").Disconnect) }
