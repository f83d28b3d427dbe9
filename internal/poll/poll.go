// Package poll waits in tests for effects that are asynchronous by nature
// (a close's $disconnect, a server coming up), by polling a condition.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until polls: short next to any timeout, long next
// to a condition's cost.
const Interval = 20 * time.Millisecond

// Until polls cond until it holds, and fails the test, naming what it
// waited for, if it does not hold within timeout.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(Interval)
	}
}
