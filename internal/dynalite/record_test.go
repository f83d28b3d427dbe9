package dynalite_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/wsgateway/wsgateway/internal/dynalite"
)

// The recorder names each call by operation and the table or index it
// reaches, the way IAM authorizes it, whether or not the call succeeds.
func TestRecorder(t *testing.T) {
	t.Parallel()
	srv := dynalite.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	setup := client(srv.Endpoint())
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	_, err := setup.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("things"),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String("bySK"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("sk"), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A new table may still be CREATING: a busy dynalite answers
	// ResourceNotFound until it is ACTIVE. The waiter's default first
	// delay (20 s) is AWS's pace, not dynalite's, which is ready within
	// milliseconds.
	waiter := dynamodb.NewTableExistsWaiter(setup, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 100*time.Millisecond
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("things")}, time.Minute); err != nil {
		t.Fatal(err)
	}

	rec := dynalite.NewRecorder()
	db := dynamodb.New(dynamodb.Options{
		Region: "us-east-1", Credentials: setup.Options().Credentials, BaseEndpoint: aws.String(srv.Endpoint()),
		Retryer: aws.NopRetryer{}, APIOptions: []func(*middleware.Stack) error{rec.APIOption},
	})
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("things"), Item: map[string]types.AttributeValue{"pk": s("a"), "sk": s("b")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("things"), IndexName: aws.String("bySK"),
		KeyConditionExpression: aws.String("sk = :v"), ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("b")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
		"things": {{DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{"pk": s("a"), "sk": s("b")}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	// Refused calls need their right all the same.
	if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("missing"), Key: map[string]types.AttributeValue{"pk": s("a")}}); err == nil {
		t.Fatal("GetItem on a missing table succeeded")
	}
	_, _ = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String("things"), Item: map[string]types.AttributeValue{"pk": s("c"), "sk": s("d")}}},
		{Delete: &types.Delete{TableName: aws.String("other"), Key: map[string]types.AttributeValue{"pk": s("c")}}},
	}})
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatal(err)
	}
	// The setup client's calls are not recorded.
	if _, err := setup.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("things")}); err != nil {
		t.Fatal(err)
	}
	// Recorded once, however often made.
	if _, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("things"), IndexName: aws.String("bySK"),
		KeyConditionExpression: aws.String("sk = :v"), ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("x")}}); err != nil {
		t.Fatal(err)
	}

	want := []dynalite.Call{
		{Operation: "BatchWriteItem", Table: "things"},
		{Operation: "GetItem", Table: "missing"},
		{Operation: "ListTables", Table: "*"},
		{Operation: "PutItem", Table: "things"},
		{Operation: "Query", Table: "things", Index: "bySK"},
		{Operation: "TransactWriteItems", Table: "other"},
		{Operation: "TransactWriteItems", Table: "things"},
	}
	if got := rec.Calls(); !slices.Equal(got, want) {
		t.Errorf("recorded %+v\nwant     %+v", got, want)
	}
}
