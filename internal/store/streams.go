package store

import (
	"context"
	"errors"
	"time"
)

// A topic's messages form a stream: every accepted publish takes the next
// position, and recent messages are retained so that a client that was away
// (a dropped network, API Gateway's 2-hour close) can catch up by position
// instead of silently missing them.

// Position is a message's place in its topic's stream. Within one epoch a
// topic's offsets grow by exactly 1 per accepted publish; a new epoch starts
// when the position could not be kept (the memory store restarted, or the
// topic's counter expired after idling past PositionKeep), and tells clients
// that offsets of another epoch mean nothing here.
type Position struct {
	Epoch  string
	Offset uint64 // 0: nothing published yet in this epoch
}

// Retained is one message kept for recovery and History: the message frame
// exactly as subscribers got it (its id, data, attributes and time are in
// it), so a recovery replays the original bytes and one copy is stored.
type Retained struct {
	Offset   uint64
	Envelope []byte
}

// PositionKeep is the keep of a topic's counter (and so of its epoch),
// unless the history retention is longer: the counter outlives the topic's
// last publish by the keep, and its last subscribe by at least half of it
// (Positions). Half, 12 hours, is long enough that a browser reconnecting
// after API Gateway's 2-hour close finds the same epoch.
const PositionKeep = 24 * time.Hour

// IdempotencyWindow is how long a publish's idempotency key is remembered.
const IdempotencyWindow = 5 * time.Minute

// ErrDuplicate: the idempotency key was used by an accepted publish to the
// same topic within IdempotencyWindow. Reserve returns it with that
// publish's outcome.
var ErrDuplicate = errors.New("duplicate idempotency key")

// Outcome is what an accepted publish answered, remembered under its
// idempotency key.
type Outcome struct {
	MessageID string
	Position  Position
}

// Streams is what the fan-out and the routes need to give every message a
// position, keep history and deduplicate publishes. Every method is safe
// for concurrent use, across processes for DynamoDB.
type Streams interface {
	// NextPosition assigns topic's next position atomically: gapless and
	// never the same twice, under any number of concurrent publishers.
	NextPosition(ctx context.Context, topic string, keep time.Duration) (Position, error)
	// Retain keeps m (whose Offset is set) in topic's history for ttl.
	Retain(ctx context.Context, topic string, pos Position, m Retained, ttl time.Duration) error
	// Positions returns each topic's latest position, starting an epoch
	// (offset 0) for a topic that has none or whose counter expired. The
	// position is read after the call began, never an older one. A
	// counter is written only when less than keep/2 of its life is left:
	// its expiry is then pushed out to keep from now. So the epoch
	// returned lasts at least keep/2 after the call, and a subscribe to a
	// topic whose counter is fresh costs a read, not a write; the counter
	// outlives the topic's last publish (NextPosition) by keep all the same.
	Positions(ctx context.Context, topics []string, keep time.Duration) (map[string]Position, error)
	// History returns topic's retained, unexpired messages of its current
	// epoch with an offset above since, oldest first, at most limit, and
	// the topic's latest position (offset 0 and an empty epoch when the
	// topic has no counter). It reads the position first and returns no
	// message above it: those were published after the call began, so a
	// subscription stored before the call gets them live.
	History(ctx context.Context, topic string, since uint64, limit int) ([]Retained, Position, error)
	// Reserve claims key for a publish to topic, for IdempotencyWindow.
	// If an accepted publish holds it, it returns ErrDuplicate with that
	// publish's outcome; if a concurrent publish holds it but has not
	// finished, it waits for it (within ctx).
	Reserve(ctx context.Context, topic, key string) (Outcome, error)
	// Complete records the outcome of the publish that reserved key.
	Complete(ctx context.Context, topic, key string, o Outcome) error
	// Release frees key after the publish that reserved it failed, so a
	// retry can go through.
	Release(ctx context.Context, topic, key string) error
}

// positionFresh reports whether a counter expiring at expires (in epoch
// seconds) is live at now with at least keep/2 of its life left, so that
// Positions returns it as it is, without a write.
func positionFresh(expires int64, now time.Time, keep time.Duration) bool {
	return live(expires, now) && expires >= keepUntil(now, keep/2)
}
