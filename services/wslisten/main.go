// Command wslisten subscribes to topics over a wsgateway WebSocket and
// prints every frame it receives, one per line. It is the devstack's
// copy-paste client:
//
//	go run ./services/wslisten demo orders.eu
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/", "WebSocket API URL (add ?token=... when connect auth is on)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: wslisten [-url ws://127.0.0.1:8080/] topic [topic ...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "wslisten:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url string, topics []string) error {
	if len(topics) == 0 {
		flag.Usage()
		return fmt.Errorf("name at least one topic")
	}
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)

	sub, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": topics})
	if err := conn.Write(ctx, websocket.MessageText, sub); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	go keepAlive(ctx, conn)
	// Reading with ctx would abort the socket on Ctrl-C; close it politely
	// instead, which also ends the read loop below.
	go func() {
		<-ctx.Done()
		conn.Close(websocket.StatusNormalClosure, "bye")
	}()
	for {
		_, frame, err := conn.Read(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		fmt.Println(string(frame))
	}
}

// keepAlive pings well inside API Gateway's 10-minute idle timeout.
func keepAlive(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			conn.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`))
		}
	}
}
