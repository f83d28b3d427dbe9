package emulator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

// outcome names what a management call got: "ok", or the error code.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return err.Error()
}

func TestQuotaThrottlesManagementCalls(t *testing.T) {
	t.Parallel()
	// One token per 1000 s: nothing refills while the test runs, so
	// exactly the burst passes.
	const burst = 5
	a := newTestAPI(t, emulator.Config{Quota: emulator.Quota{Rate: 0.001, Burst: burst}})
	ws, id := a.connect(t)
	mgmt := noRetries(a)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	// The quota is the account's: every kind of call draws on it.
	calls := []func(i int) error{
		func(i int) error {
			_, err := mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: fmt.Append(nil, i)})
			return err
		},
		func(int) error {
			_, err := mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: &id})
			return err
		},
		func(int) error {
			_, err := mgmt.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String("AAAAAAAAAAAAAAA=")})
			return err
		},
	}
	var passed, throttled int
	for i := range 4 * burst {
		err := calls[i%len(calls)](i)
		var limit *types.LimitExceededException
		switch {
		case errors.As(err, &limit):
			throttled++
			if status := httpStatus(err); status != http.StatusTooManyRequests {
				t.Errorf("throttled call: HTTP %d, want 429", status)
			}
		case err == nil, errors.As(err, new(*types.GoneException)):
			passed++
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if passed != burst || throttled != 3*burst {
		t.Errorf("%d calls passed and %d were throttled, want %d and %d", passed, throttled, burst, 3*burst)
	}
	// Posts 0 and 3 were in the burst; the throttled ones never reached
	// the socket, whose next frame is the close from shutting down.
	for _, want := range []string{"0", "3"} {
		if got := read(t, ws); got != want {
			t.Fatalf("socket got %q, want %q", got, want)
		}
	}
	go a.emu.Close()
	if _, got, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("after the burst: frame %q (%v), want the close frame", got, err)
	}
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// postAll posts "0", "1", ... to id and returns each call's outcome,
// checking that the SDK decoded each fault as AWS's.
func postAll(t *testing.T, a *testAPI, id string, n int) []string {
	t.Helper()
	mgmt := noRetries(a)
	out := make([]string, n)
	for i := range out {
		_, err := mgmt.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: fmt.Append(nil, i)})
		out[i] = outcome(err)
		switch out[i] {
		case "LimitExceededException":
			if !errors.As(err, new(*types.LimitExceededException)) || httpStatus(err) != http.StatusTooManyRequests {
				t.Errorf("throttled post: %v, want a 429 *types.LimitExceededException", err)
			}
		case "InternalServerErrorException":
			if httpStatus(err) != http.StatusInternalServerError {
				t.Errorf("failed post: %v, want HTTP 500", err)
			}
		}
	}
	return out
}

func TestInjectedManagementFaults(t *testing.T) {
	t.Parallel()
	const calls = 200
	faults := emulator.Faults{Throttle: 0.3, ServerError: 0.2, Seed: 42}
	a := newTestAPI(t, emulator.Config{Faults: faults})
	ws, id := a.connect(t)
	got := postAll(t, a, id, calls)

	count := map[string]int{}
	var delivered []string
	for i, o := range got {
		count[o]++
		if o == "ok" {
			delivered = append(delivered, fmt.Sprint(i))
		}
	}
	// The seed fixes the counts; the bounds only say they are about right.
	if n := count["LimitExceededException"]; n < 40 || n > 80 {
		t.Errorf("%d of %d calls throttled, want about 30%%", n, calls)
	}
	if n := count["InternalServerErrorException"]; n < 20 || n > 60 {
		t.Errorf("%d of %d calls got 500, want about 20%%", n, calls)
	}
	if len(count) != 3 {
		t.Errorf("outcomes = %v, want only ok, 429 and 500", count)
	}
	// A failed call has no effect: the socket got the successful posts
	// only, in order.
	for _, want := range delivered {
		if frame := read(t, ws); frame != want {
			t.Fatalf("socket got %q, want %q", frame, want)
		}
	}

	// The same seed gives the same faults; another seed does not.
	same := newTestAPI(t, emulator.Config{Faults: faults})
	_, sameID := same.connect(t)
	if again := postAll(t, same, sameID, calls); strings.Join(again, ",") != strings.Join(got, ",") {
		t.Errorf("same seed, different faults:\n%v\n%v", got, again)
	}
	faults.Seed++
	other := newTestAPI(t, emulator.Config{Faults: faults})
	_, otherID := other.connect(t)
	if again := postAll(t, other, otherID, calls); strings.Join(again, ",") == strings.Join(got, ",") {
		t.Error("another seed gave exactly the same faults")
	}
}

func TestLostDisconnects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fraction float64
		min, max int // $disconnects expected of 20
	}{
		{"none lost", 0, 20, 20},
		{"some lost", 0.5, 1, 19},
		{"all lost", 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newTestAPI(t, emulator.Config{Faults: emulator.Faults{LoseDisconnect: tt.fraction, Seed: 3}})
			ids := make([]string, 20)
			for i := range ids {
				var ws *websocket.Conn
				ws, ids[i] = a.connect(t)
				if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
					t.Fatal(err)
				}
			}
			a.emu.Close() // waits for every $disconnect that fires
			if got := len(a.disconnects); got < tt.min || got > tt.max {
				t.Errorf("%d $disconnects for 20 closed connections, want %d to %d", got, tt.min, tt.max)
			}
			// Lost or not, every connection is gone.
			for _, id := range ids {
				if err := post(t, a, id, "late"); !errors.As(err, new(*types.GoneException)) {
					t.Fatalf("post to closed %s: %v, want GoneException", id, err)
				}
			}
		})
	}
}

func TestManagementLatency(t *testing.T) {
	t.Parallel()
	const latency = 300 * time.Millisecond
	a := newTestAPI(t, emulator.Config{ManagementLatency: latency})
	_, id := a.connect(t)

	// Concurrent calls wait side by side, not in a queue: ten of them
	// take about one latency, far from ten.
	const calls = 10
	start := time.Now()
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			began := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if _, err := a.mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: &id}); err != nil {
				t.Errorf("GetConnection: %v", err)
			}
			if took := time.Since(began); took < latency {
				t.Errorf("call took %v, less than the latency %v", took, latency)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took >= calls*latency/2 {
		t.Errorf("%d concurrent calls took %v: they waited in turn", calls, took)
	}
}

func TestManagementLatencyEndsWithTheCaller(t *testing.T) {
	t.Parallel()
	// Long enough to tell apart from the wait below, short enough that a
	// failing run's cleanup ends.
	a := newTestAPI(t, emulator.Config{ManagementLatency: 4 * wait})
	_, id := a.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := a.mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: &id}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetConnection: %v, want the caller's deadline", err)
	}
	// httptest.Server.Close waits for every handler: one still sleeping
	// out its latency would hold it.
	closed := make(chan struct{})
	go func() {
		a.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("a management call is still waiting after its caller left")
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, emulator.Config{})
	if got := a.emu.Stats().Connections; got != 0 {
		t.Fatalf("connections = %d before any", got)
	}
	ws1, id1 := a.connect(t)
	_, id2 := a.connect(t)
	if got := a.emu.Stats().Connections; got != 2 {
		t.Errorf("connections = %d, want 2", got)
	}
	if err := ws1.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	assertDisconnect(t, a, id1, websocket.StatusNormalClosure)
	if got := a.emu.Stats().Connections; got != 1 {
		t.Errorf("connections = %d after one left, want 1", got)
	}
	a.emu.Drop(id2)
	if got := a.emu.Stats().Connections; got != 0 {
		t.Errorf("connections = %d after both left, want 0", got)
	}
}

func TestInvalidConfigPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  emulator.Config
		want string // in the panic message
	}{
		{"throttle above 1", emulator.Config{Faults: emulator.Faults{Throttle: 1.5}}, "Faults.Throttle"},
		{"negative server errors", emulator.Config{Faults: emulator.Faults{ServerError: -0.1}}, "Faults.ServerError"},
		{"faults above every call", emulator.Config{Faults: emulator.Faults{Throttle: 0.6, ServerError: 0.6}}, "more than every call"},
		{"lost disconnects above 1", emulator.Config{Faults: emulator.Faults{LoseDisconnect: 2}}, "Faults.LoseDisconnect"},
		{"negative latency", emulator.Config{ManagementLatency: -time.Second}, "ManagementLatency"},
		{"negative idle timeout", emulator.Config{IdleTimeout: -time.Second}, "IdleTimeout"},
		{"negative rate", emulator.Config{Quota: emulator.Quota{Rate: -1, Burst: 1}}, "Quota.Rate"},
		{"rate without burst", emulator.Config{Quota: emulator.Quota{Rate: 10}}, "Quota.Burst is 0"},
		{"burst without rate", emulator.Config{Quota: emulator.Quota{Burst: 10}}, "without a Quota.Rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.Contains(msg, tt.want) {
					t.Errorf("panic %q, want one naming %q", msg, tt.want)
				}
			}()
			emulator.New(tt.cfg)
		})
	}
}
