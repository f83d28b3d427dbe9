// Command clientpublish is the publish route's Lambda: a browser publishes
// to a topic over its WebSocket, within its connect token's publish claim
// and its connection's rate (CLIENT_PUBLISH_RATE, CLIENT_PUBLISH_BURST),
// and the message is fanned out as a backend's is, by posting to each
// subscriber through the management API, so it needs APIGW_ENDPOINT.
// (lambdas/publish is the backends' publish Lambda.)
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.ClientPublish("clientpublish").Handle)
}
