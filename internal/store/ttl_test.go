package store_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/store"
)

// fakeDynamoDB answers the calls EnsureTable makes as DynamoDB does, with a
// TTL API that dynalite lacks, and records the operations it was sent.
type fakeDynamoDB struct {
	ttlStatus, ttlAttr string // what DescribeTimeToLive reports
	updateErr          string // the error type UpdateTimeToLive answers, if any

	mu    sync.Mutex
	calls []string
	ttl   map[string]any // the last UpdateTimeToLive's specification
}

func (f *fakeDynamoDB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	var in map[string]any
	body, _ := io.ReadAll(r.Body)
	json.Unmarshal(body, &in)
	f.mu.Lock()
	f.calls = append(f.calls, op)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	keys := func(hash, rng string) []any {
		return []any{map[string]any{"AttributeName": hash, "KeyType": "HASH"}, map[string]any{"AttributeName": rng, "KeyType": "RANGE"}}
	}
	table := map[string]any{
		"TableName": in["TableName"], "TableStatus": "ACTIVE", "KeySchema": keys("pk", "sk"),
		"GlobalSecondaryIndexes": []any{map[string]any{"IndexName": "byConnection", "KeySchema": keys("sk", "pk"), "IndexStatus": "ACTIVE"}},
	}
	var out any
	switch op {
	case "CreateTable":
		out = map[string]any{"TableDescription": table}
	case "DescribeTable":
		out = map[string]any{"Table": table}
	case "DescribeTimeToLive":
		d := map[string]any{"TimeToLiveStatus": f.ttlStatus}
		if f.ttlAttr != "" {
			d["AttributeName"] = f.ttlAttr
		}
		out = map[string]any{"TimeToLiveDescription": d}
	case "UpdateTimeToLive":
		if f.updateErr != "" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"__type": "com.amazonaws.dynamodb.v20120810#" + f.updateErr, "message": "refused"})
			return
		}
		f.mu.Lock()
		f.ttl, _ = in["TimeToLiveSpecification"].(map[string]any)
		f.mu.Unlock()
		out = map[string]any{"TimeToLiveSpecification": in["TimeToLiveSpecification"]}
	default:
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]any{"__type": "com.amazon.coral.service#UnknownOperationException"})
		return
	}
	json.NewEncoder(w).Encode(out)
}

func (f *fakeDynamoDB) called(op string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == op {
			return true
		}
	}
	return false
}

func ensureOn(t *testing.T, f *fakeDynamoDB) error {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return store.EnsureTable(t.Context(), store.NewDynamoDBClient(testConfig(), srv.URL), "wsgateway")
}

// Items of connections whose $disconnect never came are removed by
// DynamoDB's TTL only if the table has it enabled, which CreateTable cannot
// do: EnsureTable must.
func TestEnsureTableEnablesTTL(t *testing.T) {
	t.Parallel()
	f := &fakeDynamoDB{ttlStatus: "DISABLED"}
	if err := ensureOn(t, f); err != nil {
		t.Fatal(err)
	}
	if f.ttl == nil {
		t.Fatalf("EnsureTable never enabled TTL; calls: %q", f.calls)
	}
	if f.ttl["AttributeName"] != "expiresAt" || f.ttl["Enabled"] != true {
		t.Errorf("UpdateTimeToLive %v, want expiresAt enabled", f.ttl)
	}
}

func TestEnsureTableKeepsEnabledTTL(t *testing.T) {
	t.Parallel()
	// Enabling TTL again is a ValidationException on DynamoDB.
	f := &fakeDynamoDB{ttlStatus: "ENABLED", ttlAttr: "expiresAt", updateErr: "ValidationException"}
	if err := ensureOn(t, f); err != nil {
		t.Fatalf("EnsureTable on a table with TTL on: %v", err)
	}
	if f.called("UpdateTimeToLive") {
		t.Error("EnsureTable enabled TTL again")
	}
	f = &fakeDynamoDB{ttlStatus: "ENABLED", ttlAttr: "ttl"}
	if err := ensureOn(t, f); err == nil {
		t.Error("EnsureTable accepted a table expiring items by another attribute")
	}
}

// Only an endpoint that lacks the TTL API is excused; any other refusal
// (no permission, a bad request) is a fault EnsureTable reports.
func TestEnsureTableTTLRefusals(t *testing.T) {
	t.Parallel()
	if err := ensureOn(t, &fakeDynamoDB{ttlStatus: "DISABLED", updateErr: "UnknownOperationException"}); err != nil {
		t.Errorf("an endpoint without UpdateTimeToLive: %v, want it tolerated", err)
	}
	for _, refusal := range []string{"ValidationException", "AccessDeniedException"} {
		if err := ensureOn(t, &fakeDynamoDB{ttlStatus: "DISABLED", updateErr: refusal}); err == nil {
			t.Errorf("UpdateTimeToLive answered %s: EnsureTable succeeded, want the error", refusal)
		}
	}
	// dynalite, the devstack's and the tests' DynamoDB, has no TTL API.
	client := store.NewDynamoDBClient(testConfig(), dynalite.Start(t).Endpoint())
	if err := store.EnsureTable(t.Context(), client, "ttl"); err != nil {
		t.Errorf("EnsureTable on dynalite: %v", err)
	}
	_, err := client.UpdateTimeToLive(t.Context(), &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String("ttl"),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("expiresAt"), Enabled: aws.Bool(true)},
	})
	if err == nil || !strings.Contains(err.Error(), "UnknownOperationException") {
		t.Errorf("dynalite's UpdateTimeToLive: %v, want UnknownOperationException (if it now supports TTL, EnsureTable's tolerance can go)", err)
	}
}

// A store that accepts connections and never answers must fail calls with
// ErrUnavailable within seconds, well inside a caller's deadline
// (CALL_TIMEOUT, 10 s by default), rather than pin them. The test shows
// it with attempts timing out after a second (wantUnavailableWhenHung);
// TestNewDynamoDBClient holds the product's timeouts to CALL_TIMEOUT.
func TestDynamoDBHungEndpointIsUnavailable(t *testing.T) {
	t.Parallel()
	wantUnavailableWhenHung(t, hungEndpoint(t),
		methods(t, "Ping", "Subscribe", "PutConnection with a user", "UserConnections", "CountSubscribers"))
}
