// Command publish is the publish Lambda: backends invoke it, directly
// or through SQS, to fan a message out to a topic's subscribers.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/handler"
	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() {
	env := lambdaenv.Load("publish", config.Config.RequireAPIGW)
	f := fanout.New(env.Store, apigw.New(env.AWS, env.Config.APIGWEndpoint), fanout.Options{Logger: env.Log})
	lambda.Start(handler.NewPublish(f, env.Log).Handle)
}
