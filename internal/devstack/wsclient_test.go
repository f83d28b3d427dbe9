package devstack_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// frame is a server frame as a browser reads it: the fields the tests
// look at, and the text as it came.
type frame struct {
	Type      string          `json:"type"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Topic     string          `json:"topic"`
	ID        string          `json:"id"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Data      json.RawMessage `json:"data"`
	Positions map[string]struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	} `json:"positions"`
	Recovered map[string]bool `json:"recovered"`
	raw       string
}

// reader is a browser that reads all the time, as a page does, so the
// emulated API Gateway never finds its buffer full; frames is closed when
// the connection ends.
type reader struct {
	conn   *websocket.Conn
	frames chan frame
	id     string // its connection id, once a test has learned it
}

// dialReader connects and starts reading.
func dialReader(t *testing.T, e *e2e) *reader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+e.stack.WSAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	r := &reader{conn: conn, frames: make(chan frame, 8192)}
	go func() {
		defer close(r.frames)
		for {
			_, raw, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			f := frame{raw: string(raw)}
			if err := json.Unmarshal(raw, &f); err != nil {
				f.Type = "not JSON"
			}
			r.frames <- f
		}
	}()
	return r
}

func (r *reader) send(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	if err := r.conn.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("send %s: %v", text, err)
	}
}

// next returns the next frame; ok is false when the connection ended.
func (r *reader) next(t *testing.T) (frame, bool) {
	t.Helper()
	select {
	case f, ok := <-r.frames:
		return f, ok
	case <-time.After(eventually):
		t.Fatal("no frame within the wait")
	}
	panic("unreachable")
}
