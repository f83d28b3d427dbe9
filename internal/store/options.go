package store

import "time"

// Option configures a store.
type Option func(*options)

type options struct {
	now      func() time.Time
	capacity func(operation string, units float64)
}

// WithConsumedCapacity has the DynamoDB store ask DynamoDB what each write
// of a publish's position and history costs (NextPosition, Retain) and
// report it to fn with the method's name, so a benchmark can tell the cost
// per publish. fn must be safe for concurrent use. The memory store has no
// capacity to report.
func WithConsumedCapacity(fn func(operation string, units float64)) Option {
	return func(o *options) { o.capacity = fn }
}

// WithClock sets the clock that stamps SubscribedAt and item expiry and
// decides what has expired; tests move it past the TTL.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

func newOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// expiresAt is the TTL of an item written at now, in epoch seconds: the unit
// of DynamoDB's TTL attribute, used by both stores so they expire alike.
func expiresAt(now time.Time) int64 {
	return now.Add(MaxConnectionLifetime + TTLSlack).Unix()
}

// live reports whether an item with the given TTL is still visible at now.
// DynamoDB deletes expired items lazily, so every read checks.
func live(expires int64, now time.Time) bool {
	return expires > now.Unix()
}
