// Package web serves the demo page and the browser client library
// (static/, embedded: no build step is needed to serve them).
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

// Handler serves the page, the client library and /config.json.
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
	mux.Handle("GET /", http.FileServerFS(files))
	return mux
}
