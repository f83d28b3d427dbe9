package store

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

const (
	// MaxPositionsTopics bounds one Positions call: a subscribe names at
	// most this many topics, each a key of its one BatchGetItem (which
	// takes up to 100) and, when its counter is new, expired or half
	// aged, a write.
	MaxPositionsTopics = 50
	// MaxIdempotencyKeyLen is the longest idempotency key a publish may
	// carry.
	MaxIdempotencyKeyLen = 128
)

// newEpoch makes the id of a new epoch. It is random, not a count, so that
// no two counters ever share one: not a memory store's after a restart, nor
// a DynamoDB counter recreated after it expired.
func newEpoch() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// keepUntil is when something kept for d from now expires, in epoch
// seconds (the unit of DynamoDB's TTL attribute), rounded up: it is kept at
// least d, never a fraction of a second less.
func keepUntil(now time.Time, d time.Duration) int64 {
	t := now.Add(d)
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec
}

// checkStreamTopic accepts a topic that may have a stream: a pattern
// ("orders.*") is something to subscribe to, never published to, so it
// gets no counter, no epoch and no history. Refusing it here keeps a
// caller's slip from writing a counter no publish would ever advance.
func checkStreamTopic(topic string) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	if wsproto.IsPattern(topic) {
		return fmt.Errorf("%w: %q is a pattern, which has no stream (positions, history)", ErrInvalidArgument, topic)
	}
	return nil
}

func checkKeep(keep time.Duration) error {
	if keep <= 0 {
		return fmt.Errorf("%w: keep %v, want a positive duration", ErrInvalidArgument, keep)
	}
	return nil
}

// checkIdempotencyKey accepts 1 to MaxIdempotencyKeyLen printable ASCII
// characters (space to tilde), what a publish may carry.
func checkIdempotencyKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty idempotency key", ErrInvalidArgument)
	case len(key) > MaxIdempotencyKeyLen:
		return fmt.Errorf("%w: idempotency key longer than %d characters", ErrInvalidArgument, MaxIdempotencyKeyLen)
	}
	for i := range len(key) {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: idempotency key has a byte 0x%02x at %d, want printable ASCII", ErrInvalidArgument, c, i)
		}
	}
	return nil
}

func checkTopicKey(topic, key string) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	return checkIdempotencyKey(key)
}

// checkRetain validates a Retain call before anything is written.
func checkRetain(topic string, pos Position, m Retained, ttl time.Duration) error {
	if err := checkStreamTopic(topic); err != nil {
		return err
	}
	switch {
	case pos.Epoch == "":
		return fmt.Errorf("%w: retain without an epoch", ErrInvalidArgument)
	case m.Offset == 0:
		return fmt.Errorf("%w: retain at offset 0, want the message's offset (1 or more)", ErrInvalidArgument)
	case pos.Offset != 0 && pos.Offset != m.Offset:
		return fmt.Errorf("%w: retain at offset %d of position %d", ErrInvalidArgument, m.Offset, pos.Offset)
	case len(m.Envelope) == 0:
		return fmt.Errorf("%w: retain without an envelope", ErrInvalidArgument)
	case ttl < 0:
		return fmt.Errorf("%w: retention %v, want 0 (none) or more", ErrInvalidArgument, ttl)
	}
	return nil
}

func checkHistory(topic string, limit int) error {
	if err := checkStreamTopic(topic); err != nil {
		return err
	}
	if limit < 1 {
		return fmt.Errorf("%w: history limit %d, want at least 1", ErrInvalidArgument, limit)
	}
	return nil
}

// checkPositions validates every topic before anything is written, so a
// bad one stores nothing, and drops duplicates.
func checkPositions(topics []string, keep time.Duration) ([]string, error) {
	if err := checkKeep(keep); err != nil {
		return nil, err
	}
	if len(topics) > MaxPositionsTopics {
		return nil, fmt.Errorf("%w: %d topics, at most %d at once", ErrInvalidArgument, len(topics), MaxPositionsTopics)
	}
	for _, t := range topics {
		if err := checkStreamTopic(t); err != nil {
			return nil, err
		}
	}
	topics = slices.Clone(topics)
	slices.Sort(topics)
	return slices.Compact(topics), nil
}

// checkOutcome validates what Complete records: a duplicate publish answers
// it, so it must be a whole answer. A message outside any topic's stream
// (one sent to a user) has no position at all; half of one is a bug.
func checkOutcome(o Outcome) error {
	switch {
	case o.MessageID == "":
		return fmt.Errorf("%w: outcome without a message id", ErrInvalidArgument)
	case o.Position == (Position{}):
	case o.Position.Epoch == "" || o.Position.Offset == 0:
		return fmt.Errorf("%w: outcome without a position (epoch %q, offset %d)", ErrInvalidArgument, o.Position.Epoch, o.Position.Offset)
	}
	return nil
}
