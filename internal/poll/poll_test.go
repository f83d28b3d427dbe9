package poll_test

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/poll"
)

// recorder notes a Fatalf and stops its goroutine, as testing.T does.
type recorder struct {
	testing.TB
	failed atomic.Bool
}

func (r *recorder) Fatalf(string, ...any) { r.failed.Store(true); runtime.Goexit() }

func fails(t *testing.T, f func(testing.TB)) bool {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); f(r) }()
	<-done
	return r.failed.Load()
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	if fails(t, func(tb testing.TB) {
		poll.Until(tb, 10*time.Second, "the third call", func() bool { return calls.Add(1) >= 3 })
	}) {
		t.Fatal("failed though the condition came to hold")
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("cond called %d times, want 3: once it holds, Until returns", n)
	}
}

func TestUntilFailsAfterTheTimeout(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if !fails(t, func(tb testing.TB) { poll.Until(tb, 100*time.Millisecond, "never", func() bool { return false }) }) {
		t.Fatal("did not fail on a condition that never holds")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", d)
	}
}
