package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// reservationPoll is how often Reserve looks again at a pending reservation
// besides being woken when it settles: a pending reservation also ends by
// expiring, which only the clock tells.
const reservationPoll = 50 * time.Millisecond

// minSweep is the fewest calls between two sweeps of expired entries.
const minSweep = 1024

// memStreams is Memory's Streams state. Its own lock keeps publishes from
// contending with subscribes.
type memStreams struct {
	mu       sync.Mutex
	counters map[string]*memCounter
	history  map[string][]memRetained // topic → retained messages ordered by offset
	keys     map[idemKey]*memReservation
	calls    int // since the last sweep
}

type memCounter struct {
	pos     Position
	expires int64
}

type memRetained struct {
	offset   uint64
	epoch    string
	envelope []byte
	expires  int64
}

type idemKey struct{ topic, key string }

type memReservation struct {
	done    bool
	outcome Outcome
	expires int64
	settled chan struct{} // closed when the reservation completes or is released
}

// counter returns topic's live counter, starting a new epoch at offset 0 if
// it has none or it expired. s.mu is held.
func (s *memStreams) counter(topic string, now time.Time) *memCounter {
	c, ok := s.counters[topic]
	if ok && live(c.expires, now) {
		return c
	}
	c = &memCounter{pos: Position{Epoch: newEpoch()}}
	s.counters[topic] = c
	// The old epoch's messages can never be asked for again.
	delete(s.history, topic)
	return c
}

// called counts a call and, every so often, drops what has expired, so the
// devstack's memory does not grow with every topic and key ever used. The
// sweep costs the size of the state, paid once per as many calls.
func (s *memStreams) called(now time.Time) {
	s.calls++
	size := len(s.counters) + len(s.history) + len(s.keys)
	if s.calls < max(minSweep, size) {
		return
	}
	s.calls = 0
	for topic, c := range s.counters {
		if !live(c.expires, now) {
			delete(s.counters, topic)
		}
	}
	for topic, msgs := range s.history {
		msgs = slices.DeleteFunc(msgs, func(r memRetained) bool { return !live(r.expires, now) })
		if len(msgs) == 0 {
			delete(s.history, topic)
		} else {
			s.history[topic] = msgs
		}
	}
	for k, r := range s.keys {
		if !live(r.expires, now) {
			delete(s.keys, k) // a waiter on a pending one polls and finds it gone
		}
	}
}

func (m *Memory) NextPosition(_ context.Context, topic string, keep time.Duration) (Position, error) {
	if err := checkStreamTopic(topic); err != nil {
		return Position{}, err
	}
	if err := checkKeep(keep); err != nil {
		return Position{}, err
	}
	now := m.now()
	s := &m.streams
	s.mu.Lock()
	defer s.mu.Unlock()
	s.called(now)
	c := s.counter(topic, now)
	c.pos.Offset++
	c.expires = keepUntil(now, keep)
	return c.pos, nil
}

func (m *Memory) Retain(_ context.Context, topic string, pos Position, r Retained, ttl time.Duration) error {
	if err := checkRetain(topic, pos, r, ttl); err != nil {
		return err
	}
	if ttl == 0 {
		return nil // HISTORY_TTL=0 keeps none
	}
	now := m.now()
	item := memRetained{offset: r.Offset, epoch: pos.Epoch, envelope: slices.Clone(r.Envelope), expires: keepUntil(now, ttl)}
	s := &m.streams
	s.mu.Lock()
	defer s.mu.Unlock()
	s.called(now)
	msgs := s.history[topic]
	// Publishes retain about in offset order: the place is at or near the end.
	i, found := slices.BinarySearchFunc(msgs, r.Offset, compareOffset)
	if found {
		msgs[i] = item // the same key as DynamoDB's: the last write wins
	} else {
		msgs = slices.Insert(msgs, i, item)
	}
	// Drop what has expired at the front, the oldest.
	n := 0
	for n < len(msgs) && !live(msgs[n].expires, now) {
		n++
	}
	s.history[topic] = msgs[n:]
	return nil
}

func compareOffset(r memRetained, offset uint64) int {
	switch {
	case r.offset < offset:
		return -1
	case r.offset > offset:
		return 1
	}
	return 0
}

// Positions pushes a counter's expiry out only when less than keep/2 of
// it is left, as the DynamoDB store does (which otherwise only reads it),
// so that both stores keep an epoch as long.
func (m *Memory) Positions(_ context.Context, topics []string, keep time.Duration) (map[string]Position, error) {
	topics, err := checkPositions(topics, keep)
	if err != nil {
		return nil, err
	}
	now := m.now()
	s := &m.streams
	s.mu.Lock()
	defer s.mu.Unlock()
	s.called(now)
	out := make(map[string]Position, len(topics))
	for _, topic := range topics {
		c := s.counter(topic, now)
		if !positionFresh(c.expires, now, keep) {
			c.expires = keepUntil(now, keep)
		}
		out[topic] = c.pos
	}
	return out, nil
}

func (m *Memory) History(_ context.Context, topic string, since uint64, limit int) ([]Retained, Position, error) {
	if err := checkHistory(topic, limit); err != nil {
		return nil, Position{}, err
	}
	now := m.now()
	s := &m.streams
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.counters[topic]
	if !ok || !live(c.expires, now) {
		return nil, Position{}, nil
	}
	msgs := s.history[topic]
	i, found := slices.BinarySearchFunc(msgs, since, compareOffset)
	if found {
		i++
	}
	var out []Retained
	for _, r := range msgs[i:] {
		// Later offsets reach a subscriber stored before the call live, as
		// in the DynamoDB store.
		if len(out) == limit || r.offset > c.pos.Offset {
			break
		}
		if r.epoch != c.pos.Epoch || !live(r.expires, now) {
			continue
		}
		out = append(out, Retained{Offset: r.offset, Envelope: slices.Clone(r.envelope)})
	}
	return out, c.pos, nil
}

func (m *Memory) Reserve(ctx context.Context, topic, key string) (Outcome, error) {
	if err := checkTopicKey(topic, key); err != nil {
		return Outcome{}, err
	}
	k := idemKey{topic, key}
	s := &m.streams
	for {
		now := m.now()
		s.mu.Lock()
		s.called(now)
		r, ok := s.keys[k]
		if !ok || !live(r.expires, now) {
			s.keys[k] = &memReservation{expires: keepUntil(now, IdempotencyWindow), settled: make(chan struct{})}
			s.mu.Unlock()
			return Outcome{}, nil
		}
		if r.done {
			o := r.outcome
			s.mu.Unlock()
			return o, fmt.Errorf("topic %q, key %q: %w", topic, key, ErrDuplicate)
		}
		settled := r.settled
		s.mu.Unlock()
		// Another publish holds the key: wait until it completes (a
		// duplicate), is released (ours to take) or expires.
		t := time.NewTimer(reservationPoll)
		select {
		case <-settled:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Outcome{}, ctx.Err()
		}
		t.Stop()
	}
}

// Complete records the outcome whether or not the key is still reserved:
// the publish was accepted with it, which is what a later duplicate must
// hear.
func (m *Memory) Complete(_ context.Context, topic, key string, o Outcome) error {
	if err := checkTopicKey(topic, key); err != nil {
		return err
	}
	if err := checkOutcome(o); err != nil {
		return err
	}
	now := m.now()
	s := &m.streams
	s.mu.Lock()
	defer s.mu.Unlock()
	k := idemKey{topic, key}
	if r, ok := s.keys[k]; ok && !r.done {
		close(r.settled)
	}
	settled := make(chan struct{})
	close(settled)
	s.keys[k] = &memReservation{done: true, outcome: o, expires: keepUntil(now, IdempotencyWindow), settled: settled}
	return nil
}

// Release frees a pending reservation; a completed one stays, since its
// publish was accepted.
func (m *Memory) Release(_ context.Context, topic, key string) error {
	if err := checkTopicKey(topic, key); err != nil {
		return err
	}
	s := &m.streams
	s.mu.Lock()
	defer s.mu.Unlock()
	k := idemKey{topic, key}
	if r, ok := s.keys[k]; ok && !r.done {
		close(r.settled)
		delete(s.keys, k)
	}
	return nil
}
