package store

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// The store's calls sit on realtime paths ($connect, subscribe, publish)
// whose callers hold a deadline, so their retries are chosen for that rather
// than left to the SDK's defaults.
const (
	// maxAttempts per call, the first included: twice the SDK's 4 for
	// DynamoDB, enough to ride out a partition throttled for a second or
	// two. The caller's deadline cuts them short.
	maxAttempts = 8

	// Waits double from backoffBase (DynamoDB's own base in the SDK) up to a
	// ceiling that depends on the error.
	backoffBase = 25 * time.Millisecond
	// throttleBackoffMax: DynamoDB refills a partition's capacity every
	// second and an on-demand table scales within seconds, so waits of up to
	// a second let a throttled call through. The SDK waits from a 1 s base
	// after a throttle, which would spend a realtime caller's budget in two
	// waits.
	throttleBackoffMax = time.Second
	// transientBackoffMax bounds the waits after other transient errors (no
	// connection, 5xx): an unreachable DynamoDB seldom comes back within a
	// second, and the caller should hear ErrUnavailable fast, in well under
	// a second over all attempts.
	transientBackoffMax = 100 * time.Millisecond

	// maxTimeoutAttempts bounds the attempts of a call whose attempts time
	// out (dynamo.go's dial and response timeouts): one retry covers a
	// connection lost on the way, and a store that hangs twice is treated
	// as down. Eight attempts of seconds each would outlast the caller's
	// deadline (CALL_TIMEOUT), which would then hear a cancellation instead
	// of ErrUnavailable.
	maxTimeoutAttempts = 2
)

// newRetryer is the SDK's standard retryer without its retry quota, with
// maxAttempts and retryDelay.
//
// The quota is a bucket of 500 tokens; a retry takes 5 after a throttle and
// 14 after another error, and gives them back only if it succeeds. A burst
// of a hundred throttled calls empties it, and from then on every throttled
// call fails at once with "retry quota exceeded": a throttled burst of
// concurrent subscribes or publishes would become mass failures, which is
// what throttling asks clients to avoid by backing off, not by giving up.
// Without the bucket each call still makes at most maxAttempts, spread by
// jittered backoff, within its caller's deadline.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(retryDelay)
	})
}

// retryDelay is the wait before retrying a call whose attempt (1 for the
// first) failed with err. After maxTimeoutAttempts timeouts it ends the call
// instead, with the error the SDK gives when attempts run out.
func retryDelay(attempt int, err error) (time.Duration, error) {
	if attempt >= maxTimeoutAttempts && isTimeout(err) {
		return 0, &retry.MaxAttemptsError{Attempt: attempt, Err: err}
	}
	ceiling := transientBackoffMax
	if isThrottle(err) {
		ceiling = throttleBackoffMax
	}
	return backoff(attempt, ceiling), nil
}

// backoff doubles from backoffBase with each attempt up to ceiling, and
// draws from the upper half of that: waits grow, yet the calls of a
// throttled burst spread out rather than retry in step.
func backoff(attempt int, ceiling time.Duration) time.Duration {
	d := min(backoffBase<<min(max(attempt-1, 0), 10), ceiling)
	return d/2 + rand.N(d/2)
}

// isTimeout reports an attempt that got no answer in time: no connection
// within the dial or TLS timeout, or no response headers. A cancelled or
// expired caller's context is not one: the SDK never retries those.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func isThrottle(err error) bool {
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}
