package emulator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/wsgateway/wsgateway/internal/emulator"
)

// BenchmarkPost measures the emulator's own work per PostToConnection, the
// hot path: the request is served in-process, the frame goes over a real
// socket to a client that drains it.
func BenchmarkPost(b *testing.B) {
	a := newTestAPI(b, emulator.Config{})
	ws, id := a.connect(b)
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	target := "/@connections/" + url.PathEscape(id)
	body := strings.Repeat("x", 512)

	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		req.Header.Set("Authorization", sigV4)
		a.emu.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
