package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
)

// subscribers are real WebSocket clients of the emulated API Gateway. Each
// reads every frame and, for a published message, notes how long it took
// from the publish: the payload carries the time it was sent.
type subscribers struct {
	clients  []*subscriber
	received atomic.Int64 // messages received by all clients together
}

type subscriber struct {
	ws  *websocket.Conn
	mu  sync.Mutex
	lat []time.Duration // publish→receive of each message since the last take
}

// connect opens n connections to url; client i subscribes to topicsFor(i).
// It returns once every subscription is acknowledged.
func connect(ctx context.Context, url string, n int, topicsFor func(i int) []string) (*subscribers, error) {
	s := &subscribers{clients: make([]*subscriber, n)}
	g, gctx := errgroup.WithContext(ctx)
	// The emulator runs $connect for each handshake, as API Gateway would,
	// before it upgrades: a bounded number in flight keeps that steady.
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			c, err := dial(gctx, url, topicsFor(i))
			if err != nil {
				return fmt.Errorf("subscriber %d: %w", i, err)
			}
			s.clients[i] = c
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		s.close()
		return nil, err
	}
	for _, c := range s.clients {
		go c.readLoop(&s.received)
	}
	return s, nil
}

func dial(ctx context.Context, url string, topics []string) (*subscriber, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	c := &subscriber{ws: ws}
	frame, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": topics})
	if err := ws.Write(ctx, websocket.MessageText, frame); err != nil {
		ws.CloseNow()
		return nil, err
	}
	_, reply, err := ws.Read(ctx)
	if err == nil && !bytes.HasPrefix(reply, []byte(`{"type":"subscribed"`)) {
		err = fmt.Errorf("subscribe answered %s", reply)
	}
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	return c, nil
}

// readLoop reads frames until the connection ends, into one buffer: the
// subscribers share the CPU with the stack they measure, so they allocate
// nothing per message. A context without Done keeps coder/websocket from
// arming a timer per read.
func (c *subscriber) readLoop(received *atomic.Int64) {
	var buf bytes.Buffer
	for {
		_, r, err := c.ws.Reader(context.Background())
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		now := time.Now()
		if sent, ok := sentAt(buf.Bytes()); ok {
			c.mu.Lock()
			c.lat = append(c.lat, now.Sub(sent))
			c.mu.Unlock()
			received.Add(1)
		}
	}
}

// payload is a message's data: when it was sent, in Unix microseconds
// (exact in a JSON number, which the publisher's structpb makes a double).
func payload(t time.Time) map[string]any { return map[string]any{"t": float64(t.UnixMicro())} }

var sentKey = []byte(`"data":{"t":`)

// sentAt finds the payload's time in an envelope without decoding it all.
func sentAt(envelope []byte) (time.Time, bool) {
	_, rest, ok := bytes.Cut(envelope, sentKey)
	if !ok {
		return time.Time{}, false
	}
	num, _, ok := bytes.Cut(rest, []byte("}"))
	if !ok {
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(string(num), 10, 64)
	return time.UnixMicro(us), err == nil
}

// waitReceived waits until the clients together hold want messages, for a
// minute at most.
func (s *subscribers) waitReceived(ctx context.Context, want int64) error {
	for deadline := time.Now().Add(time.Minute); s.received.Load() < want; time.Sleep(time.Millisecond) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d messages missing after a minute", want-s.received.Load())
		}
	}
	return nil
}

// takeLatencies returns the latencies the first n clients recorded since
// the last call, and forgets them.
func (s *subscribers) takeLatencies(n int) []time.Duration {
	var all []time.Duration
	for _, c := range s.clients[:n] {
		c.mu.Lock()
		all = append(all, c.lat...)
		c.lat = c.lat[:0]
		c.mu.Unlock()
	}
	return all
}

func (s *subscribers) close() {
	var wg sync.WaitGroup
	for _, c := range s.clients {
		if c != nil {
			wg.Go(func() { c.ws.CloseNow() })
		}
	}
	wg.Wait()
}

// nestedTopics gives subscriber i the topic of every size above i, so that
// one set of connections serves a topic of each size: the first sizes[k]
// subscribers are the topic of size k.
func nestedTopics(sizes []int, topic func(size int) string) func(i int) []string {
	return func(i int) []string {
		var topics []string
		for _, s := range sizes {
			if i < s {
				topics = append(topics, topic(s))
			}
		}
		return topics
	}
}
