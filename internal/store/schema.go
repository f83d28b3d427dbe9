package store

import (
	"encoding/base64"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The table's layout, the one place it is written down in code
// (deploy/table.json declares the same table; TestTableJSONMatchesCode keeps
// them equal).
//
// One table, seven kinds of item (the seventh, a connection's publish rate
// limit, is described in ratelimit.go), keyed so that every read is a GetItem or
// a Query:
//
//	item          pk                  sk                          attributes
//	connection    conn#<id>           conn#<id>                   connectedAt, subject, sourceIp, userAgent, allowedTopics, publishTopics, expiresAt
//	subscription  topic#<topic>       conn#<id>                   subscribedAt, userId, expiresAt
//	membership    user#<userId>       conn#<id>                   expiresAt
//	counter       pos#<topic>         pos#<topic>                 offset, epoch, expiresAt
//	history       hist#<topic>        hist#<topic>#<offset>       epoch, envelope, expiresAt
//	idempotency   idem#<topic>#<key>  idem#<topic>#<key>          state, messageId, epoch, offset, expiresAt
//
// A topic's subscribers are one partition of the table, ordered by
// connection id; so are a pattern's ("orders.*", "*": topic#orders.*),
// which the fan-out reads beside its topics' and which, never published
// to, has no counter or history. A user's connections are one partition too (membership
// items, written by PutConnection for a connection with a Subject), also
// ordered by connection id. The byConnection index swaps the keys, so one
// partition of it holds a connection's item, all its subscriptions and its
// membership: what $disconnect deletes. Topics reads only its topic# keys.
// A subscription carries its connection's user (userId), so a topic's
// partition alone tells how many distinct users it reaches.
//
// The streams' items (streams.go) land in the byConnection index too, as
// every item with pk and sk does: each gets an sk of its own, so none of
// the index's partitions grows hot with a busy topic, and none starts with
// conn#, so the index's readers (DeleteConnection, Topics) never see them.
// A history item's offset is zero-padded to 20 digits (all of uint64), so
// the sort key orders a topic's history by offset. An idempotency key is
// base64url-encoded in its item's key: keys may hold '#', and without the
// encoding topic "a#b" with key "c" and topic "a" with key "b#c" would share
// an item; the encoding has no '#', so the last '#' ends the topic.
const (
	attrPK            = "pk"
	attrSK            = "sk"
	attrExpiresAt     = "expiresAt" // the table's TTL attribute, epoch seconds
	attrConnectedAt   = "connectedAt"
	attrSubscribedAt  = "subscribedAt"
	attrSubject       = "subject"
	attrUserID        = "userId"
	attrSourceIP      = "sourceIp"
	attrUserAgent     = "userAgent"
	attrAllowedTopics = "allowedTopics"
	attrOffset        = "offset"
	attrEpoch         = "epoch"
	attrState         = "state"

	indexByConnection = "byConnection"

	connPrefix    = "conn#"
	topicPrefix   = "topic#"
	userPrefix    = "user#"
	counterPrefix = "pos#"
	historyPrefix = "hist#"
	idemPrefix    = "idem#"
)

func connKey(id string) string     { return connPrefix + id }
func topicKey(topic string) string { return topicPrefix + topic }
func userKey(userID string) string { return userPrefix + userID }

func counterKey(topic string) string { return counterPrefix + topic }
func historyPK(topic string) string  { return historyPrefix + topic }
func historySK(topic string, offset uint64) string {
	return fmt.Sprintf("%s%s#%020d", historyPrefix, topic, offset)
}
func idemItemKey(topic, key string) string {
	return idemPrefix + topic + "#" + base64.RawURLEncoding.EncodeToString([]byte(key))
}

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
