package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// MaxBroadcastTopics bounds one Broadcast: each topic is a publish of its
// own (a position, a retention, a key, a fan-out).
const MaxBroadcastTopics = 100

// Broadcast is one message for many topics.
type Broadcast struct {
	Topics     []string // 1 to MaxBroadcastTopics distinct topics
	Data       json.RawMessage
	Attributes map[string]string
	// IdempotencyKey applies per topic, as if each topic's message were
	// published on its own with it: a retried broadcast delivers nothing
	// again to the topics that had it, and the rest go through.
	IdempotencyKey string
}

// TopicResult is how one topic's publish of a Broadcast ended.
type TopicResult struct {
	Topic string
	Result
	// Err is the topic's publish error (the store failed, the deadline);
	// nil when it went through.
	Err error
}

// validate checks a whole broadcast before anything is read or posted: one
// bad topic refuses it all.
func (b Broadcast) validate() error {
	switch n := len(b.Topics); {
	case n == 0:
		return fmt.Errorf("%w: give at least one topic", ErrInvalid)
	case n > MaxBroadcastTopics:
		return fmt.Errorf("%w: %d topics, at most %d allowed", ErrInvalid, n, MaxBroadcastTopics)
	}
	seen := make(map[string]int, len(b.Topics))
	longest := ""
	for i, t := range b.Topics {
		if err := wsproto.ValidateTopic(t); err != nil {
			return fmt.Errorf("%w: topics[%d]: %w", ErrInvalid, i, err)
		}
		if j, dup := seen[t]; dup {
			return fmt.Errorf("%w: topics[%d] repeats topics[%d] (%q): give each topic once", ErrInvalid, i, j, t)
		}
		seen[t] = i
		if len(t) > len(longest) {
			longest = t
		}
	}
	if err := checkContent(b.Data, b.Attributes, b.IdempotencyKey); err != nil {
		return err
	}
	// Topic names need no JSON escaping, so the longest one makes the
	// largest envelope: if it fits, every topic's does.
	m := wsproto.Message{Topic: longest, ID: newID(), Data: b.Data, Attributes: b.Attributes}
	return checkEnvelope(wsproto.WithLongestPosition(m), " with room for its position")
}

// Broadcast publishes b's message to each of its topics, as Publish would
// one by one: each topic's message gets its own id and position (and its
// own idempotency reservation under the shared key). Everything is
// validated first; an invalid broadcast (ErrInvalid) posts nothing.
//
// Topics are published concurrently, at most BroadcastConcurrency at once;
// all their posts share the Fanout's one flow, so a broadcast to 100 topics
// is paced to the account's quota as one publish is, not 100 times over.
//
// The results are one per topic, in b.Topics' order. A topic whose publish
// fails (the store is down) does not stop the others: its TopicResult
// carries the error, and Broadcast returns the first such error, in
// b.Topics' order, beside the results. A retry with the same idempotency
// key then delivers nothing again to the topics that went through.
func (f *Fanout) Broadcast(ctx context.Context, b Broadcast) ([]TopicResult, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	if b.IdempotencyKey != "" && f.opts.Streams == nil {
		return nil, errors.New("fanout: an idempotency key needs Options.Streams to remember it")
	}
	results := make([]TopicResult, len(b.Topics))
	var g errgroup.Group
	g.SetLimit(f.opts.BroadcastConcurrency)
	for i, topic := range b.Topics {
		g.Go(func() error {
			res, err := f.Publish(ctx, Message{Topic: topic, Data: b.Data, Attributes: b.Attributes, IdempotencyKey: b.IdempotencyKey})
			results[i] = TopicResult{Topic: topic, Result: res, Err: err}
			return nil // kept in results: one topic's failure stops no other
		})
	}
	g.Wait()
	for _, r := range results {
		if r.Err != nil {
			return results, fmt.Errorf("broadcast to %q: %w", r.Topic, r.Err)
		}
	}
	return results, nil
}
