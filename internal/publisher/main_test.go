package publisher

import (
	"testing"

	"go.uber.org/goleak"
)

// Run starts servers, a gateway connection and drain timers; every test
// here must leave none of their goroutines behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
