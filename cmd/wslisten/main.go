// Command wslisten subscribes to topics over a wsgateway WebSocket and
// prints every frame it receives, one per line. It is the devstack's
// copy-paste client:
//
//	go run ./cmd/wslisten demo orders.eu
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgateway/wsgateway/internal/config"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/", "WebSocket API URL")
	token := flag.String("token", "", "connect token, sent as ?token= (needed when the stack sets CONNECT_TOKEN_SECRET; mint one with make token)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: wslisten [-url ws://127.0.0.1:8080/] [-token jwt] topic [topic ...]")
		flag.PrintDefaults()
		// Flags only: the stack's variables do not concern a client.
		fmt.Fprint(os.Stderr, "\n", config.Usage("wslisten"))
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	u, err := withToken(*url, *token)
	if err == nil {
		err = run(ctx, u, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wslisten:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url string, topics []string) error {
	if len(topics) == 0 {
		flag.Usage()
		return fmt.Errorf("name at least one topic")
	}
	conn, res, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		if res != nil && res.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("connect to %s: %w\n%s", redact(url), err, unauthorizedHint)
		}
		return fmt.Errorf("connect to %s: %w", redact(url), err)
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

// unauthorizedHint is what a 401 at the handshake means with wsgateway.
const unauthorizedHint = `the stack refused the connection (401): it requires a connect token (it sets CONNECT_TOKEN_SECRET),
or the token given is invalid or expired. Mint one with the stack's secret and pass it with -token
(sent as ?token=), from the repository root:
  export CONNECT_TOKEN_SECRET='<the stack's secret>'
  go run ./cmd/wslisten -token "$(make -s token TOPICS='demo')" demo`

// withToken adds token to rawURL as the token query parameter, the only
// place a browser-compatible WebSocket handshake can carry it.
func withToken(rawURL, token string) (string, error) {
	if token == "" {
		return rawURL, nil
	}
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("-url %q: %w", rawURL, err)
	}
	q := u.Query()
	if q.Has("token") {
		return "", errors.New("give the token with -token or in -url's ?token=, not both")
	}
	q.Set("token", token)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// redact hides a token in url, for error messages.
func redact(rawURL string) string {
	u, err := neturl.Parse(rawURL)
	if err != nil || !u.Query().Has("token") {
		return rawURL
	}
	q := u.Query()
	q.Set("token", "REDACTED")
	u.RawQuery = q.Encode()
	return u.String()
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
