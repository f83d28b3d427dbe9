package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wsgateway/wsgateway/web"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	h := web.Handler(web.Config{WebSocketURL: "wss://abc.execute-api.eu-west-1.amazonaws.com/prod"})
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string // prefix
		body         string // substring
	}{
		{"GET", "/config.json", 200, "application/json", `"webSocketUrl":"wss://abc.execute-api.eu-west-1.amazonaws.com/prod"`},
		{"GET", "/", 200, "text/html", `data-testid="message-log"`},
		// Browsers refuse module scripts served with any other type.
		{"GET", "/app.js", 200, "text/javascript", `from "./wsgateway.js"`},
		{"GET", "/wsgateway.js", 200, "text/javascript", "export class GatewayClient"},
		{"GET", "/style.css", 200, "text/css", ".layout"},
		{"GET", "/chat", 200, "text/html", `data-testid="chat-log"`},
		{"GET", "/chat?room=lobby", 200, "text/html", `<script type="module" src="chat.js">`},
		{"GET", "/chat.js", 200, "text/javascript", `from "./wsgateway.js"`},
		{"GET", "/missing.js", 404, "text/plain", "not found"},
		{"POST", "/config.json", 405, "text/plain", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.status || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.contentType) || !strings.Contains(string(body), tc.body) {
				t.Fatalf("%s %s = %d %q %.200q\nwant %d %q containing %q",
					tc.method, tc.path, rec.Code, rec.Header().Get("Content-Type"), body, tc.status, tc.contentType, tc.body)
			}
		})
	}
}

// The page reads its WebSocket URL from /config.json; a URL that needs
// escaping in JSON must still come back exactly.
func TestConfigRoundTrips(t *testing.T) {
	t.Parallel()
	want := web.Config{WebSocketURL: `ws://127.0.0.1:8080/?a=1&b=<"x">`}
	rec := httptest.NewRecorder()
	web.Handler(want).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/config.json", nil))
	var got web.Config
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("config.json = %+v, want %+v", got, want)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store: a restarted stack may listen elsewhere", cc)
	}
}
