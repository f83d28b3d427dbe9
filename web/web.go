// Package web serves the demo page, the chat page and the browser client
// library (static/, embedded: no build step is needed to serve them).
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Config is what the page needs to know about the running stack.
type Config struct {
	// WebSocketURL is the WebSocket API the page connects to.
	WebSocketURL string `json:"webSocketUrl"`
}

// Handler serves the pages, the client library and /config.json.
func Handler(cfg Config) http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	conf, _ := json.Marshal(cfg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(conf)
	})
	// The chat page at a URL of its own, to link and share: /chat?room=lobby.
	mux.HandleFunc("GET /chat", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "chat.html")
	})
	mux.Handle("GET /", http.FileServerFS(files))
	return mux
}
