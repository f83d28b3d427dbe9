package emulator_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

// awsID matches API Gateway's connection and request ids ("JC1dgf9yoAMCK-g=").
var awsID = regexp.MustCompile(`^[A-Za-z0-9_-]{15}=$`)

func TestEventsAreBuiltLikeAPIGateways(t *testing.T) {
	t.Parallel()
	messages := make(chan event, 1)
	a := newTestAPI(t, emulator.Config{
		Stage: "dev",
		APIID: "abc123",
		Routes: map[string]emulator.Handler{
			"subscribe": recorder(messages),
		},
	})

	before := time.Now().UnixMilli()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	header := http.Header{"User-Agent": {"emulator-test/1.0"}, "X-Custom": {"one", "two"}}
	ws, _, err := websocket.Dial(ctx, a.wsURL+"?token=abc&x=1&x=2", &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	connect := receive(t, a.connects)
	rc := connect.RequestContext
	id := rc.ConnectionID
	if !awsID.MatchString(id) {
		t.Errorf("connectionId %q is not shaped like API Gateway's", id)
	}
	for _, f := range []struct{ name, got, want string }{
		{"routeKey", rc.RouteKey, "$connect"},
		{"eventType", rc.EventType, "CONNECT"},
		{"stage", rc.Stage, "dev"},
		{"apiId", rc.APIID, "abc123"},
		{"domainName", rc.DomainName, a.host},
		{"identity.sourceIp", rc.Identity.SourceIP, "127.0.0.1"},
		{"identity.userAgent", rc.Identity.UserAgent, "emulator-test/1.0"},
		{"headers.Host", connect.Headers["Host"], a.host},
		{"headers.X-Custom", connect.Headers["X-Custom"], "two"},
		{"headers.X-Forwarded-For", connect.Headers["X-Forwarded-For"], "127.0.0.1"},
		{"queryStringParameters.token", connect.QueryStringParameters["token"], "abc"},
		{"queryStringParameters.x", connect.QueryStringParameters["x"], "2"},
	} {
		if f.got != f.want {
			t.Errorf("$connect %s = %q, want %q", f.name, f.got, f.want)
		}
	}
	if got := connect.MultiValueQueryStringParameters["x"]; !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("multiValueQueryStringParameters[x] = %q", got)
	}
	if got := connect.MultiValueHeaders["X-Custom"]; !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("multiValueHeaders[X-Custom] = %q", got)
	}
	if !awsID.MatchString(rc.RequestID) || rc.ExtendedRequestID == "" {
		t.Errorf("requestId %q, extendedRequestId %q", rc.RequestID, rc.ExtendedRequestID)
	}
	if rc.ConnectedAt < before || rc.RequestTimeEpoch < rc.ConnectedAt || rc.RequestTime == "" {
		t.Errorf("connectedAt %d, requestTimeEpoch %d, requestTime %q: want times from %d on", rc.ConnectedAt, rc.RequestTimeEpoch, rc.RequestTime, before)
	}

	send(t, ws, `{"action":"subscribe","topic":"a"}`)
	msg := receive(t, messages)
	mc := msg.RequestContext
	if mc.RouteKey != "subscribe" || mc.EventType != "MESSAGE" || mc.ConnectionID != id || mc.ConnectedAt != rc.ConnectedAt {
		t.Errorf("message event: route %q, type %q, connection %q, connectedAt %d", mc.RouteKey, mc.EventType, mc.ConnectionID, mc.ConnectedAt)
	}
	if msg.Body != `{"action":"subscribe","topic":"a"}` {
		t.Errorf("message body = %q", msg.Body)
	}
	if mid, _ := mc.MessageID.(string); mid == "" || mc.RequestID == rc.RequestID {
		t.Errorf("messageId %v, requestId %q: want a fresh id per message", mc.MessageID, mc.RequestID)
	}
	if mc.Stage != "dev" || mc.DomainName != a.host || mc.Identity.SourceIP != "127.0.0.1" {
		t.Errorf("message event: stage %q, domainName %q, identity %+v", mc.Stage, mc.DomainName, mc.Identity)
	}
	if msg.Headers != nil || msg.QueryStringParameters != nil {
		t.Errorf("message event carries the upgrade's headers or query: %v %v", msg.Headers, msg.QueryStringParameters)
	}

	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	disconnect := assertDisconnect(t, a, id, websocket.StatusNormalClosure)
	if got := *disconnect.RequestContext.DisconnectReason; got != "bye" {
		t.Errorf("disconnectReason = %q, want the client's %q", got, "bye")
	}
	if dc := disconnect.RequestContext; dc.Stage != "dev" || dc.ConnectedAt != rc.ConnectedAt || dc.Identity.UserAgent != "emulator-test/1.0" {
		t.Errorf("$disconnect: stage %q, connectedAt %d, identity %+v", dc.Stage, dc.ConnectedAt, dc.Identity)
	}
}
