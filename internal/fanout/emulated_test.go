package fanout_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/store"
)

// emulated is an emulated API Gateway (configured by cfg) with n real
// WebSocket subscribers of one topic, recorded in an in-memory store, each
// counting the frames it receives.
type emulated struct {
	emu      *emulator.Emulator
	url      string
	store    *store.Memory
	received []atomic.Int32
	readers  sync.WaitGroup
}

func newEmulated(t *testing.T, cfg emulator.Config, n int, topic string) *emulated {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &emulated{emu: emulator.New(cfg), store: store.NewMemory(), received: make([]atomic.Int32, n)}
	srv := httptest.NewServer(e.emu)
	t.Cleanup(srv.Close)
	t.Cleanup(e.emu.Close)
	e.url = srv.URL
	for i := range n {
		c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		c.SetReadLimit(-1) // like a browser's: up to API Gateway's 128 KB
		e.readers.Go(func() {
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					return
				}
				e.received[i].Add(1)
			}
		})
	}
	for _, id := range e.emu.ConnectionIDs() {
		if err := e.store.PutConnection(context.Background(), store.Connection{ID: id}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Subscribe(context.Background(), id, "", []string{topic}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// poster is the real management API client, signed with local credentials.
func (e *emulated) poster() *apigw.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	return apigw.New(cfg, e.url)
}

// counts closes every socket, once all it was sent has arrived, and
// returns how many frames each subscriber received.
func (e *emulated) counts() []int32 {
	e.emu.Close()
	e.readers.Wait()
	out := make([]int32, len(e.received))
	for i := range e.received {
		out[i] = e.received[i].Load()
	}
	return out
}
