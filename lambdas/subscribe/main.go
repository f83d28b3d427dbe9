// Command subscribe is the subscribe route's Lambda: it records the topics a
// connection asks for, within what its connect token granted.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() { lambda.Start(lambdaenv.Routes("subscribe").Subscribe) }
