package handler

import (
	"google.golang.org/protobuf/types/known/structpb"

	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// callsFile is what every function's code calls on AWS, as recorded by
// TestAWSCalls. deploy/template_test.go holds the template's IAM grants to
// it, exactly: no right less, none more.
const callsFile = "../../deploy/testdata/aws-calls.json"

var update = flag.Bool("update", false, "rewrite "+callsFile+" with the AWS calls the handlers make")

// awsCall is one right a function's code needs: an IAM action on a
// resource named relative to the deployment. "table" is the table,
// "table/index/<name>" one of its indexes, and "<METHOD>/@connections/*"
// the connections of the WebSocket API's stage, as an execute-api ARN ends.
type awsCall struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
}

// managementAPI stands in for API Gateway's @connections API at the HTTP
// level, where the real client's requests arrive: connections named
// "gone-*" have closed (410), the others take the message. It records the
// methods called, for execute-api:ManageConnections.
type managementAPI struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[awsCall]bool
}

func newManagementAPI(t *testing.T) *managementAPI {
	t.Helper()
	m := &managementAPI{calls: map[awsCall]bool{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, id, ok := strings.Cut(r.URL.Path, "/@connections/")
		if !ok || id == "" {
			http.NotFound(w, r)
			return
		}
		m.mu.Lock()
		m.calls[awsCall{"execute-api:ManageConnections", r.Method + "/@connections/*"}] = true
		m.mu.Unlock()
		if strings.HasPrefix(id, "gone-") {
			w.Header().Set("x-amzn-ErrorType", "GoneException")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"message":null}`)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(m.Close)
	return m
}

// principal is one function's view of AWS: its own clients, whose calls
// are recorded, over the shared table.
type principal struct {
	cfg   aws.Config
	store *store.DynamoDB
	rec   *dynalite.Recorder
}

// TestAWSCalls runs every function's handler against dynalite through the
// real SDK clients, along the paths its code can take (refusals, outages of
// the management API's connections included), and records which AWS calls
// each makes. The record must equal callsFile, so that the file, and with
// it the template's grants, cannot fall behind the code. After changing
// what a handler calls, run
//
//	go test ./internal/handler -run TestAWSCalls -update
//
// and grant deploy/template.yaml exactly what the file then says.
func TestAWSCalls(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv := dynalite.Start(t)
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	const table = "wsgateway-calls"
	setupClient := store.NewDynamoDBClient(cfg, srv.Endpoint())
	if err := store.EnsureTable(ctx, setupClient, table); err != nil {
		t.Fatal(err)
	}
	// What a test arranges beforehand is no function's call.
	setup := store.NewDynamoDB(setupClient, table)
	connectAs := func(id, user string, allowed []string, topics ...string) {
		t.Helper()
		if err := setup.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now(), Subject: user, AllowedTopics: allowed}); err != nil {
			t.Fatal(err)
		}
		if len(topics) > 0 {
			if err := setup.Subscribe(ctx, id, user, topics); err != nil {
				t.Fatal(err)
			}
		}
	}
	connect := func(id string, allowed []string, topics ...string) {
		t.Helper()
		connectAs(id, "", allowed, topics...)
	}
	// userConnections is what the store lists of user's connections.
	userConnections := func(user string) []string {
		t.Helper()
		page, err := setup.UserConnections(ctx, user, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		return page.ConnectionIDs
	}
	newPrincipal := func() principal {
		p := principal{cfg: cfg.Copy(), rec: dynalite.NewRecorder()}
		p.cfg.APIOptions = append(p.cfg.APIOptions, p.rec.APIOption)
		p.store = store.NewDynamoDB(store.NewDynamoDBClient(p.cfg, srv.Endpoint()), table)
		return p
	}
	// routes are the WebSocket routes as a route's Lambda builds them.
	routes := func(p principal) *Routes {
		r := NewRoutes(p.store, discard())
		r.Configure(config.Config{MaxSubscriptions: 3, CallTimeout: 10 * time.Second, HistoryTTL: time.Minute, RecoveryMaxMessages: 10})
		return r
	}
	ws := func(id, routeKey, body string) events.APIGatewayWebsocketProxyRequest {
		ev := message(t, routeKey, body)
		ev.RequestContext.ConnectionID = id
		return ev
	}
	wantFrame := func(what string, resp events.APIGatewayProxyResponse, err error, typ, code string) {
		t.Helper()
		if f := answered(t, resp, err); f.Type != typ || f.Code != code {
			t.Errorf("%s: answered %+v, want %s %s", what, f, typ, code)
		}
	}

	recorded := map[string][]awsCall{}
	record := func(name string, p principal, mgmt *managementAPI) {
		t.Helper()
		calls := []awsCall{}
		for _, c := range p.rec.Calls() {
			if c.Table != table {
				t.Errorf("%s calls %s on table %q, not the deployment's", name, c.Operation, c.Table)
				continue
			}
			resource := "table"
			if c.Index != "" {
				resource += "/index/" + c.Index
			}
			calls = append(calls, awsCall{"dynamodb:" + c.Operation, resource})
		}
		if mgmt != nil {
			mgmt.mu.Lock()
			for c := range mgmt.calls {
				calls = append(calls, c)
			}
			mgmt.mu.Unlock()
		}
		slices.SortFunc(calls, func(a, b awsCall) int { return strings.Compare(a.Action+" "+a.Resource, b.Action+" "+b.Resource) })
		recorded[name] = calls
	}

	t.Run("connect", func(t *testing.T) {
		p := newPrincipal()
		r := routes(p)
		ev := decodeEvent(t, connectEvent)
		ev.RequestContext.ConnectionID = "connect-1"
		if resp, err := r.Connect(ctx, ev); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("connect: %d, %v", resp.StatusCode, err)
		}
		// A connection with a user: its item and its membership in the
		// user's partition.
		r.Authenticate = func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
			return Grant{Subject: "connect-user", Topics: []string{"a"}}, nil
		}
		ev.RequestContext.ConnectionID = "connect-3"
		if resp, err := r.Connect(ctx, ev); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("connect with a user: %d, %v", resp.StatusCode, err)
		}
		if got := userConnections("connect-user"); !slices.Equal(got, []string{"connect-3"}) {
			t.Errorf("after connect with a user: the user's connections %q, want connect-3", got)
		}
		r.Authenticate = func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
			return Grant{Subject: "bad\nuser"}, nil
		}
		ev.RequestContext.ConnectionID = "connect-4"
		if resp, _ := r.Connect(ctx, ev); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("connect with a sub that is no user id: %d, want 401", resp.StatusCode)
		}
		r.Authenticate = func(context.Context, events.APIGatewayWebsocketProxyRequest) (Grant, error) {
			return Grant{}, errors.New("no token")
		}
		ev.RequestContext.ConnectionID = "connect-2"
		if resp, _ := r.Connect(ctx, ev); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("refused connect: %d, want 401", resp.StatusCode)
		}
		record("connect", p, nil)
	})

	t.Run("subscribe", func(t *testing.T) {
		p := newPrincipal()
		r := routes(p)
		connect("sub-1", nil)
		connect("sub-2", []string{"orders.*"})
		connect("sub-3", nil, "a", "b", "c")
		resp, err := r.Subscribe(ctx, ws("sub-1", "subscribe", `{"action":"subscribe","topics":["a","b"]}`))
		wantFrame("subscribe", resp, err, wsproto.TypeSubscribed, "")
		// A user's connection puts the user on its subscriptions.
		connectAs("sub-5", "sub-user", nil)
		resp, err = r.Subscribe(ctx, ws("sub-5", "subscribe", `{"action":"subscribe","topics":["a"]}`))
		wantFrame("subscribe with a user", resp, err, wsproto.TypeSubscribed, "")
		if conns, users, err := setup.CountSubscribers(ctx, "a"); err != nil || conns != 3 || users != 1 {
			t.Errorf("CountSubscribers(a) = %d, %d, %v; want sub-1, sub-3 and sub-5, of one user", conns, users, err)
		}
		resp, err = r.Subscribe(ctx, ws("sub-2", "subscribe", `{"action":"subscribe","topics":["billing"]}`))
		wantFrame("outside the grant", resp, err, wsproto.TypeError, wsproto.CodeForbidden)
		resp, err = r.Subscribe(ctx, ws("sub-3", "subscribe", `{"action":"subscribe","topics":["d"]}`))
		wantFrame("past the limit", resp, err, wsproto.TypeError, wsproto.CodeLimitExceeded)
		resp, err = r.Subscribe(ctx, ws("sub-9", "subscribe", `{"action":"subscribe","topics":["a"]}`))
		wantFrame("unregistered", resp, err, wsproto.TypeError, wsproto.CodeBadRequest)
		resp, err = r.Subscribe(ctx, ws("sub-1", "subscribe", `{"action":"subscribe","topics":"a"}`))
		wantFrame("malformed", resp, err, wsproto.TypeError, wsproto.CodeBadRequest)

		// A recovering subscribe reads the history and replays it to the
		// connection, as lambdas/subscribe wires it: to one that takes
		// it, and to one that is gone.
		mgmt := newManagementAPI(t)
		r.Poster = apigw.New(p.cfg, mgmt.URL+"/prod")
		pos, err := setup.NextPosition(ctx, "e", store.PositionKeep)
		if err != nil {
			t.Fatal(err)
		}
		env := fmt.Sprintf(`{"type":"message","topic":"e","id":"m1","offset":1,"epoch":%q,"data":1,"publishTime":"2024-01-20T12:00:00Z"}`, pos.Epoch)
		if err := setup.Retain(ctx, "e", pos, store.Retained{Offset: 1, Envelope: []byte(env)}, time.Minute); err != nil {
			t.Fatal(err)
		}
		connect("sub-4", nil)
		connect("gone-4", nil)
		for id, want := range map[string]bool{"sub-4": true, "gone-4": false} {
			resp, err = r.Subscribe(ctx, ws(id, "subscribe", fmt.Sprintf(`{"action":"subscribe","topics":["e"],"recover":{"e":{"epoch":%q,"offset":0}}}`, pos.Epoch)))
			wantFrame("recovering", resp, err, wsproto.TypeSubscribed, "")
			var f struct{ Recovered map[string]bool }
			if err := json.Unmarshal([]byte(resp.Body), &f); err != nil || f.Recovered["e"] != want {
				t.Errorf("recovering subscribe of %s answered %s, want e recovered: %v", id, resp.Body, want)
			}
		}
		record("subscribe", p, mgmt)
	})

	t.Run("unsubscribe", func(t *testing.T) {
		p := newPrincipal()
		r := routes(p)
		connect("unsub-1", nil, "a", "b")
		resp, err := r.Unsubscribe(ctx, ws("unsub-1", "unsubscribe", `{"action":"unsubscribe","topics":["a","zzz"]}`))
		wantFrame("unsubscribe", resp, err, wsproto.TypeUnsubscribed, "")
		resp, err = r.Unsubscribe(ctx, ws("unsub-1", "unsubscribe", `{"action":"unsubscribe","topics":["bad topic"]}`))
		wantFrame("invalid", resp, err, wsproto.TypeError, wsproto.CodeInvalidTopic)
		record("unsubscribe", p, nil)
	})

	t.Run("default", func(t *testing.T) {
		p := newPrincipal()
		r := routes(p)
		for body, typ := range map[string]string{`{"action":"ping"}`: wsproto.TypePong, `{"action":"nope"}`: wsproto.TypeError, `nope`: wsproto.TypeError} {
			resp, err := r.Default(ctx, ws("default-1", "$default", body))
			if f := answered(t, resp, err); f.Type != typ {
				t.Errorf("%s: answered %+v, want %s", body, f, typ)
			}
		}
		record("default", p, nil)
	})

	t.Run("disconnect", func(t *testing.T) {
		p := newPrincipal()
		r := routes(p)
		connect("disc-1", nil, "a", "b")
		connectAs("disc-2", "disc-user", nil, "a")
		for _, id := range []string{"disc-1", "disc-2", "disc-unknown"} {
			ev := decodeEvent(t, disconnectEvent)
			ev.RequestContext.ConnectionID = id
			if resp, err := r.Disconnect(ctx, ev); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("disconnect %s: %d, %v", id, resp.StatusCode, err)
			}
		}
		if topics, err := setup.Topics(ctx, "disc-1"); err != nil || len(topics) != 0 {
			t.Errorf("after disconnect: topics %q (%v), want none", topics, err)
		}
		if got := userConnections("disc-user"); len(got) != 0 {
			t.Errorf("after disconnect: the user's connections %q, want none", got)
		}
		record("disconnect", p, nil)
	})

	// The publish route, as lambdas/clientpublish wires it: the routes'
	// grant check, the store's rate limit and the fan-out, over the same
	// table; every path: published (to one that takes it and one gone),
	// refused for its content, its grant and its rate, and unregistered.
	t.Run("clientpublish", func(t *testing.T) {
		p := newPrincipal()
		mgmt := newManagementAPI(t)
		f := fanout.New(p.store, apigw.New(p.cfg, mgmt.URL+"/prod"), fanout.Options{Logger: discard(), Streams: p.store, HistoryTTL: 5 * time.Minute})
		h := NewClientPublish(routes(p), f, p.store, store.RateLimit{Rate: 0.001, Burst: 1})
		connect("cpub-1", nil, "chat.1")
		connect("gone-cpub", nil, "chat.1")
		if err := setup.PutConnection(ctx, store.Connection{ID: "cpub-2", PublishTopics: []string{"chat.*"}}); err != nil {
			t.Fatal(err)
		}
		resp, err := h.Handle(ctx, ws("cpub-1", "publish", `{"action":"publish","topic":"chat.1","data":1}`))
		wantFrame("publish", resp, err, wsproto.TypePublished, "")
		resp, err = h.Handle(ctx, ws("cpub-1", "publish", `{"action":"publish","topic":"chat.1","data":2}`))
		wantFrame("past the rate", resp, err, wsproto.TypeError, wsproto.CodeRateLimited)
		resp, err = h.Handle(ctx, ws("cpub-2", "publish", `{"action":"publish","topic":"news","data":1}`))
		wantFrame("outside the grant", resp, err, wsproto.TypeError, wsproto.CodeForbidden)
		resp, err = h.Handle(ctx, ws("cpub-2", "publish", `{"action":"publish","topic":"chat.*","data":1}`))
		wantFrame("a pattern", resp, err, wsproto.TypeError, wsproto.CodeInvalidTopic)
		resp, err = h.Handle(ctx, ws("cpub-9", "publish", `{"action":"publish","topic":"chat.1","data":1}`))
		wantFrame("unregistered", resp, err, wsproto.TypeError, wsproto.CodeBadRequest)
		if _, err := setup.GetConnection(ctx, "gone-cpub"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("gone connection still recorded (%v)", err)
		}
		record("clientpublish", p, mgmt)
	})

	t.Run("publish", func(t *testing.T) {
		p := newPrincipal()
		mgmt := newManagementAPI(t)
		// As lambdas/publish wires it: positions, history and idempotency
		// keys in the same table.
		f := fanout.New(p.store, apigw.New(p.cfg, mgmt.URL+"/prod"), fanout.Options{Logger: discard(), Streams: p.store, HistoryTTL: 5 * time.Minute})
		h := NewPublish(f, discard())
		connect("pub-1", nil, "orders.1")
		connect("gone-1", nil, "orders.1")
		got, err := h.Handle(ctx, json.RawMessage(`{"topic":"orders.1","data":{"id":1}}`))
		if r, ok := got.(PublishResponse); err != nil || !ok || r.Delivered != 1 || r.Gone != 1 {
			t.Errorf("publish: %+v, %v; want 1 delivered, 1 gone", got, err)
		}
		if _, err := setup.GetConnection(ctx, "gone-1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("gone connection still recorded (%v)", err)
		}
		batch := sqsEvent(t, queueARN,
			sqsRecord{"m1", `{"topic":"orders.1","data":2}`},
			sqsRecord{"m2", `{"topic":"nobody","data":3}`},
			sqsRecord{"m3", `not json`},
		)
		// Twice: the second time each record is a duplicate of the first.
		for range 2 {
			if _, err := h.Handle(ctx, batch); err != nil {
				t.Errorf("publish from SQS: %v", err)
			}
		}
		record("publish", p, mgmt)
	})

	// The publisher container: every RPC of its service, over the same
	// fan-out, as services/publisher wires it.
	t.Run("publisher", func(t *testing.T) {
		p := newPrincipal()
		mgmt := newManagementAPI(t)
		client := apigw.New(p.cfg, mgmt.URL+"/prod")
		f := fanout.New(p.store, client, fanout.Options{Logger: discard(), Streams: p.store, HistoryTTL: 5 * time.Minute, Closer: client})
		svc := publisher.NewService(f, p.store)
		connectAs("srv-1", "srv-user", nil, "srv.a", "srv.b")
		connectAs("srv-2", "srv-user", nil, "srv.a")
		connectAs("gone-srv", "srv-user", nil, "srv.a")
		data, _ := structpb.NewValue(map[string]any{"n": 1})
		calls := []struct {
			name string
			call func() error
		}{
			{"Publish", func() error {
				_, err := svc.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "srv.a", Data: data, IdempotencyKey: "k1"})
				return err
			}},
			{"Publish again", func() error {
				_, err := svc.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: "srv.a", Data: data, IdempotencyKey: "k1"})
				return err
			}},
			{"Broadcast", func() error {
				_, err := svc.Broadcast(ctx, &wsgatewayv1.BroadcastRequest{Topics: []string{"srv.a", "srv.b"}, Data: data})
				return err
			}},
			{"SendToUser", func() error {
				_, err := svc.SendToUser(ctx, &wsgatewayv1.SendToUserRequest{UserId: "srv-user", Data: data, IdempotencyKey: "k2"})
				return err
			}},
			{"ListSubscribers", func() error {
				_, err := svc.ListSubscribers(ctx, &wsgatewayv1.ListSubscribersRequest{Topic: "srv.a"})
				return err
			}},
			{"CountSubscribers", func() error {
				_, err := svc.CountSubscribers(ctx, &wsgatewayv1.CountSubscribersRequest{Topic: "srv.a"})
				return err
			}},
			{"History", func() error {
				_, err := svc.History(ctx, &wsgatewayv1.HistoryRequest{Topic: "srv.a"})
				return err
			}},
			{"Disconnect a connection", func() error {
				_, err := svc.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{ConnectionId: "srv-2", Reason: "bye"})
				return err
			}},
			{"Disconnect a user", func() error {
				_, err := svc.Disconnect(ctx, &wsgatewayv1.DisconnectRequest{UserId: "srv-user", Reason: "bye"})
				return err
			}},
			{"readiness", func() error { return p.store.Ping(ctx) }},
		}
		for _, c := range calls {
			if err := c.call(); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		}
		if got := userConnections("srv-user"); len(got) != 0 {
			t.Errorf("after disconnecting the user: connections %q, want none", got)
		}
		record("publisher", p, mgmt)
	})

	want, err := json.MarshalIndent(recorded, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if t.Failed() {
		return // a broken path records too little to judge
	}
	if *update {
		if err := os.WriteFile(callsFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(callsFile)
	if err != nil {
		t.Fatalf("%v: run go test ./internal/handler -run TestAWSCalls -update", err)
	}
	var file map[string][]awsCall
	if err := json.Unmarshal(have, &file); err != nil {
		t.Fatalf("%s: %v", callsFile, err)
	}
	for _, name := range slices.Sorted(mapsKeys(recorded, file)) {
		if !slices.Equal(recorded[name], file[name]) {
			t.Errorf("%s calls %v\n%s says %v", name, recorded[name], callsFile, file[name])
		}
	}
	if t.Failed() {
		t.Log("the handlers' AWS calls changed: run go test ./internal/handler -run TestAWSCalls -update, then grant deploy/template.yaml what the file says")
	}
}

// mapsKeys is the union of the keys of a and b.
func mapsKeys[V any](a, b map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok && !yield(k) {
				return
			}
		}
	}
}
