package publisher

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestUsableRequestID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"4bf92f3577b34da6a3ce929d0e0e4736", true},
		{"Root=1-67891233-abcdef012345678912345678", true}, // an X-Amzn-Trace-Id
		{strings.Repeat("x", maxRequestIDLen), true},
		{strings.Repeat("x", maxRequestIDLen+1), false},
		{"", false},
		{"a b", false},
		{"a\nlevel=ERROR msg=forged", false},
		{"a\x00", false},
		{"\x7f", false},
		{"ïd", false},
	} {
		if got := usableRequestID(tt.id); got != tt.want {
			t.Errorf("usableRequestID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// Wrapping twice, as a main and newGRPCServer both do, logs the id once;
// loggers derived with With keep adding it; a record logged outside a call
// gets none.
func TestRequestIDHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := NewRequestIDHandler(NewRequestIDHandler(slog.NewTextHandler(&buf, nil)))
	log := slog.New(h).With("topic", "t")
	ctx := context.WithValue(context.Background(), requestIDCtxKey{}, "req-1")

	log.InfoContext(ctx, "in a call")
	log.Info("outside")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log = %q, want two lines", buf.String())
	}
	if n := strings.Count(lines[0], "request_id=req-1"); n != 1 || !strings.Contains(lines[0], "topic=t") {
		t.Errorf("line in a call = %q, want topic and request_id once", lines[0])
	}
	if strings.Contains(lines[1], "request_id") {
		t.Errorf("line outside a call = %q, want no request_id", lines[1])
	}
}
