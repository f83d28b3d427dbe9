// Command unsubscribe is the unsubscribe route's Lambda: it forgets topics a
// connection no longer wants.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() { lambda.Start(lambdaenv.Routes("unsubscribe").Unsubscribe) }
