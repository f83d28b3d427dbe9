package devstack_test

import (
	"context"
	"testing"
	"time"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
)

// emulatorEnv is a devstack on free ports with the EMULATOR_* settings
// given as name, value pairs.
func emulatorEnv(pairs ...string) map[string]string {
	env := map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"}
	for i := 0; i < len(pairs); i += 2 {
		env[pairs[i]] = pairs[i+1]
	}
	return env
}

// The EMULATOR_* settings reach the devstack's emulated API Gateway: a user
// rehearsing AWS's round trip, account throttle or failures sees them in
// what a publish costs and in /metrics.
func TestEmulatorSettings(t *testing.T) {
	t.Parallel()

	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		const latency = 400 * time.Millisecond
		e := start(t, emulatorEnv("EMULATOR_LATENCY", latency.String()))
		for range 3 {
			e.dial(t, "far")
		}
		begin := time.Now()
		e.publish(t, "far", `1`, 3)
		if took := time.Since(begin); took < latency {
			t.Errorf("a publish to 3 subscribers took %v, less than EMULATOR_LATENCY=%v", took, latency)
		}
	})

	t.Run("quota", func(t *testing.T) {
		t.Parallel()
		// One management call a second, none saved up: of four posts at
		// once, at most one passes the first time.
		e := start(t, emulatorEnv("EMULATOR_QUOTA", "1", "EMULATOR_QUOTA_BURST", "1"))
		for range 4 {
			e.dial(t, "busy")
		}
		before := e.scrape(t)
		res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: "busy", Data: one()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Delivered+res.Failed != 4 {
			t.Errorf("Publish = %v, want all 4 subscribers accounted for", res)
		}
		after := e.scrape(t)
		throttled := after.Value(t, "wsgateway_management_call_duration_seconds", "outcome", "throttled") -
			before.Value(t, "wsgateway_management_call_duration_seconds", "outcome", "throttled")
		if throttled < 3 {
			t.Errorf("%v management calls answered 429, want at least 3 of 4 over a quota of 1 call/s", throttled)
		}
	})

	t.Run("faults", func(t *testing.T) {
		t.Parallel()
		e := start(t, emulatorEnv("EMULATOR_FAULT_SERVER_ERROR", "1", "EMULATOR_FAULT_SEED", "3"))
		e.dial(t, "broken")
		before := e.scrape(t)
		res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{Topic: "broken", Data: one()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Delivered != 0 || res.Failed != 1 {
			t.Errorf("Publish = %v, want it failed: every management call answers 500", res)
		}
		after := e.scrape(t)
		if got := after.Value(t, "wsgateway_management_call_duration_seconds", "outcome", "server_error") -
			before.Value(t, "wsgateway_management_call_duration_seconds", "outcome", "server_error"); got < 1 {
			t.Errorf("%v management calls answered 500 in /metrics, want every attempt", got)
		}
	})
}
