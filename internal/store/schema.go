package store

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The table's layout, the one place it is written down in code
// (deploy/table.json declares the same table; TestTableJSONMatchesCode keeps
// them equal).
//
// One table, two kinds of item, both keyed so that every read is a Query:
//
//	item          pk               sk              attributes
//	connection    conn#<id>        conn#<id>       connectedAt, subject, sourceIp, userAgent, allowedTopics, expiresAt
//	subscription  topic#<topic>    conn#<id>       subscribedAt, expiresAt
//
// A topic's subscribers are one partition of the table, ordered by
// connection id. The byConnection index swaps the keys, so one partition of
// it holds a connection's item and all its subscriptions: what $disconnect
// deletes and Topics lists.
const (
	attrPK            = "pk"
	attrSK            = "sk"
	attrExpiresAt     = "expiresAt" // the table's TTL attribute, epoch seconds
	attrConnectedAt   = "connectedAt"
	attrSubscribedAt  = "subscribedAt"
	attrSubject       = "subject"
	attrSourceIP      = "sourceIp"
	attrUserAgent     = "userAgent"
	attrAllowedTopics = "allowedTopics"

	indexByConnection = "byConnection"

	connPrefix  = "conn#"
	topicPrefix = "topic#"
)

func connKey(id string) string     { return connPrefix + id }
func topicKey(topic string) string { return topicPrefix + topic }

// createTableInput declares the table for EnsureTable. DynamoDB's
// CreateTable cannot set the TTL attribute; deploy/table.json does.
func createTableInput(table string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String(indexByConnection),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeRange},
			},
			// Cleanup needs only the keys; Topics also filters on expiry.
			Projection: &types.Projection{
				ProjectionType:   types.ProjectionTypeInclude,
				NonKeyAttributes: []string{attrExpiresAt},
			},
		}},
	}
}
