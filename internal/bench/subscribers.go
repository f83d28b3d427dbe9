package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// subscribers are real WebSocket clients of the emulated API Gateway. Each
// reads every frame and, for a published message, notes how long it took
// from the publish: the payload carries the time it was sent.
type subscribers struct {
	clients  []*subscriber
	received atomic.Int64 // messages received by all clients together
	ended    atomic.Int64 // connections that ended
}

type subscriber struct {
	ws  *websocket.Conn
	buf []byte
	// lat holds the publish→receive latency of every message received
	// since the last reset; only the client's read loop appends to it.
	mu  sync.Mutex
	lat []time.Duration
}

// dialConcurrency bounds the handshakes in flight: the emulator runs
// $connect for each, as API Gateway would, before it upgrades.
const dialConcurrency = 64

// connect opens n connections to url; client i subscribes to topicsFor(i).
// It returns once every subscription is acknowledged.
func connect(ctx context.Context, url string, n int, topicsFor func(i int) []string) (*subscribers, error) {
	s := &subscribers{clients: make([]*subscriber, n)}
	err := forEach(ctx, n, dialConcurrency, func(ctx context.Context, i int) error {
		c, err := dial(ctx, url, topicsFor(i))
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		s.clients[i] = c
		return nil
	})
	if err != nil {
		s.close()
		return nil, err
	}
	for _, c := range s.clients {
		go func() {
			c.readLoop(&s.received)
			s.ended.Add(1)
		}()
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
	c := &subscriber{ws: ws, buf: make([]byte, 0, 512)}
	if len(topics) == 0 {
		return c, nil
	}
	frame, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": topics})
	if err := ws.Write(ctx, websocket.MessageText, frame); err != nil {
		ws.CloseNow()
		return nil, err
	}
	_, reply, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	if !bytes.HasPrefix(reply, []byte(`{"type":"subscribed"`)) {
		ws.CloseNow()
		return nil, fmt.Errorf("subscribe answered %s", reply)
	}
	return c, nil
}

// readLoop reads frames until the connection ends. A context without Done
// keeps coder/websocket from arming a timer per read.
func (c *subscriber) readLoop(received *atomic.Int64) {
	for {
		_, r, err := c.ws.Reader(context.Background())
		if err != nil {
			return
		}
		c.buf = c.buf[:0]
		for {
			if len(c.buf) == cap(c.buf) {
				c.buf = append(c.buf, 0)[:len(c.buf)]
			}
			n, err := r.Read(c.buf[len(c.buf):cap(c.buf)])
			c.buf = c.buf[:len(c.buf)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
		}
		now := time.Now()
		sent, ok := sentAt(c.buf)
		if !ok {
			continue
		}
		c.mu.Lock()
		c.lat = append(c.lat, now.Sub(sent))
		c.mu.Unlock()
		received.Add(1)
	}
}

// payload is a message's data: when it was sent, in Unix microseconds
// (exact in a JSON number, which the publisher's structpb makes a double).
func payload(t time.Time) map[string]any {
	return map[string]any{"t": float64(t.UnixMicro())}
}

var sentKey = []byte(`"data":{"t":`)

// sentAt finds the payload's time in an envelope without decoding it all:
// the client's CPU is the publisher's and the emulator's too.
func sentAt(envelope []byte) (time.Time, bool) {
	i := bytes.Index(envelope, sentKey)
	if i < 0 {
		return time.Time{}, false
	}
	rest := envelope[i+len(sentKey):]
	end := bytes.IndexByte(rest, '}')
	if end < 0 {
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}

// waitReceived waits until the clients together hold want messages, and
// reports whether they did before timeout.
func (s *subscribers) waitReceived(ctx context.Context, want int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for s.received.Load() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// takeLatencies returns every latency recorded since the last call, of the
// first n clients, and forgets them.
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

// forEach calls fn for 0…n-1, at most limit at a time, and stops at the
// first error.
func forEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// nestedTopics gives subscriber i the topic of every size above i, so one
// set of connections serves a topic of each size: the first size[k]
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
