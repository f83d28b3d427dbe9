// Command connect is the $connect route's Lambda: it verifies the connect
// token (when CONNECT_TOKEN_SECRET is set) and records each new connection;
// refusing one (401, or 500 on a store failure) makes the client retry.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/lambdas/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Routes("connect").Connect)
}
