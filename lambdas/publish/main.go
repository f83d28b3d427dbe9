// Command publish is the publish Lambda: backends invoke it, directly
// or through SQS, to fan a message out to a topic's subscribers.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Load("publish", config.Config.RequireAPIGW).Publish.Handle)
}
