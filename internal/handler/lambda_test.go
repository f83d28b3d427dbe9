package handler

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgateway/wsgateway/internal/store"
)

// The handlers as the Lambda runtime calls them: lambda.Start accepts their
// signatures, decodes the event JSON and encodes what they return.
func TestLambdaRuntime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := store.NewMemory()
	routes := NewRoutes(mem, discard())
	publish := NewPublish(&fakeFanout{}, discard())
	subscribe, _ := json.Marshal(message(t, "subscribe", `{"action":"subscribe","topic":"news"}`))
	// The subscribed answer carries news's position, in an epoch of the
	// store's making.
	news, err := mem.Positions(ctx, []string{"news"}, store.PositionKeep)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		handler any
		event   []byte
		want    string
	}{
		{"$connect", routes.Connect, []byte(connectEvent), `{"statusCode":200,"headers":null,"multiValueHeaders":null,"body":""}`},
		{"subscribe", routes.Subscribe, subscribe, `{"statusCode":200,"headers":null,"multiValueHeaders":null,"body":"{\"type\":\"subscribed\",\"topics\":[\"news\"],\"positions\":{\"news\":{\"epoch\":\"` + news["news"].Epoch + `\",\"offset\":0}}}"}`},
		{"publish, direct", publish.Handle, []byte(`{"topic":"news","data":[1,2]}`), `{"messageId":"id-news","delivered":2,"gone":1,"failed":0,"offset":7,"epoch":"ep","duplicate":false}`},
		{
			"publish, SQS", publish.Handle,
			sqsEvent(t, queueARN, sqsRecord{"m1", `{"topic":"down.1","data":1}`}, sqsRecord{"m2", `{"topic":"news","data":1}`}),
			`{"batchItemFailures":[{"itemIdentifier":"m1"}]}`,
		},
	}
	// Sequential: subscribe needs the connection $connect records.
	for _, tt := range tests {
		got, err := lambda.NewHandler(tt.handler).Invoke(ctx, tt.event)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !sameJSON(t, got, []byte(tt.want)) {
			t.Errorf("%s answered\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}

// sameJSON compares two JSON documents by value, not by bytes: key order,
// spacing and escaping are the encoder's business. A string that holds
// JSON, as an API Gateway response's body does, is compared by value too.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(decodeStrings(x), decodeStrings(y))
}

func decodeStrings(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = decodeStrings(e)
		}
	case []any:
		for i, e := range v {
			v[i] = decodeStrings(e)
		}
	case string:
		var inner any
		if strings.HasPrefix(v, "{") && json.Unmarshal([]byte(v), &inner) == nil {
			return decodeStrings(inner)
		}
	}
	return v
}
