package store

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// NewDynamoDBClientTimingOut is NewDynamoDBClient with each attempt's dial,
// TLS and response timeouts all d: shorter than the product's against a
// store that never answers, longer for a burst that queues on one
// dynalite. TestNewDynamoDBClient holds NewDynamoDBClient to the real ones.
func NewDynamoDBClientTimingOut(cfg aws.Config, endpoint string, d time.Duration) *dynamodb.Client {
	return newDynamoDBClient(cfg, endpoint, attemptTimeouts{dial: d, tlsHandshake: d, responseHeader: d})
}
