// Command subscribe is the subscribe route's Lambda: it records the topics a
// connection asks for, within what its connect token granted, and replays
// what a recovering client missed by posting to its connection through the
// management API, so it needs APIGW_ENDPOINT.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Routes("subscribe", config.Config.RequireAPIGW).Subscribe)
}
