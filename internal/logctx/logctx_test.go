package logctx_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/wsgateway/wsgateway/internal/logctx"
)

type key string

func field(k key) logctx.Field {
	return logctx.Field{Key: string(k), From: func(ctx context.Context) string {
		v, _ := ctx.Value(k).(string)
		return v
	}}
}

// Each field a call's context carries is logged once, however often the
// handler was wrapped and whatever With added; a line logged outside a call
// gets none.
func TestWrap(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := logctx.Wrap(logctx.Wrap(slog.NewTextHandler(&buf, nil), field("request_id")), field("request_id"), field("aws_request_id"))
	log := slog.New(h).With("topic", "t")
	ctx := context.WithValue(context.Background(), key("request_id"), "req-1")
	ctx = context.WithValue(ctx, key("aws_request_id"), "aws-1")

	log.InfoContext(ctx, "in a call")
	log.Info("outside")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log = %q, want two lines", buf.String())
	}
	for _, want := range []string{"request_id=req-1", "aws_request_id=aws-1", "topic=t"} {
		if n := strings.Count(lines[0], " "+want); n != 1 {
			t.Errorf("line in a call = %q, want %s once", lines[0], want)
		}
	}
	if strings.Contains(lines[1], "request_id") {
		t.Errorf("line outside a call = %q, want no ids", lines[1])
	}
}

// Levels are the wrapped handler's.
func TestEnabled(t *testing.T) {
	t.Parallel()
	h := logctx.Wrap(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}), field("request_id"))
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("Enabled does not follow the wrapped handler's level")
	}
}
