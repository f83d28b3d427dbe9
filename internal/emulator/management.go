package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// manage serves the @connections management API. Signatures are not
// checked: any caller may manage any connection.
func (e *Emulator) manage(w http.ResponseWriter, r *http.Request, id string) {
	switch r.Method {
	case http.MethodPost:
		e.post(w, r, id)
	case http.MethodGet:
		e.get(w, id)
	case http.MethodDelete:
		e.delete(w, id)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeAPIError(w, http.StatusMethodNotAllowed, "MethodNotAllowedException", r.Method+" is not a management API method")
	}
}

// bodies recycles POST bodies: PostToConnection is the hot path, called
// once per subscriber per message.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// post is PostToConnection: the body goes to the client as one text frame.
func (e *Emulator) post(w http.ResponseWriter, r *http.Request, id string) {
	if r.ContentLength > maxPayloadBytes {
		writeTooLarge(w)
		return
	}
	buf := bodies.Get().(*bytes.Buffer)
	defer bodies.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, maxPayloadBytes+1)); err != nil {
		writeAPIError(w, http.StatusBadRequest, "BadRequestException", "reading the body: "+err.Error())
		return
	}
	if buf.Len() > maxPayloadBytes {
		writeTooLarge(w)
		return
	}
	c := e.lookup(id)
	if c == nil || e.send(c, buf.Bytes()) != nil {
		writeGone(w)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// connectionInfo is GetConnection's output; the SDK parses the times as
// ISO 8601.
type connectionInfo struct {
	ConnectedAt  string   `json:"connectedAt"`
	LastActiveAt string   `json:"lastActiveAt"`
	Identity     identity `json:"identity"`
}

type identity struct {
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

const isoMillis = "2006-01-02T15:04:05.000Z"

func (e *Emulator) get(w http.ResponseWriter, id string) {
	c := e.lookup(id)
	if c == nil {
		writeGone(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(connectionInfo{
		ConnectedAt:  c.connectedAt.UTC().Format(isoMillis),
		LastActiveAt: time.Unix(0, c.lastActive.Load()).UTC().Format(isoMillis),
		Identity:     identity{SourceIP: c.sourceIP, UserAgent: c.userAgent},
	})
}

// delete is DeleteConnection: the connection is gone for the management API
// at once; the close handshake and $disconnect follow in the background, as
// on AWS.
func (e *Emulator) delete(w http.ResponseWriter, id string) {
	c := e.lookup(id)
	if c == nil {
		writeGone(w)
		return
	}
	e.remove(c)
	go e.closeConn(c, websocket.StatusNormalClosure, "")
	w.WriteHeader(http.StatusNoContent)
}

// The SDK decodes a typed error (*types.GoneException, ...) from the
// x-amzn-ErrorType header, falling back to the body's "code" or "__type".
func writeAPIError(w http.ResponseWriter, status int, errorType, message string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{message})
	writeErrorBody(w, status, errorType, body)
}

func writeErrorBody(w http.ResponseWriter, status int, errorType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", errorType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Preencoded: these answer the hot path's common failures.
var (
	goneBody     = []byte(`{"message":"the connection is gone"}`)
	tooLargeBody = []byte(`{"message":"the message exceeds the 131072-byte payload limit"}`)
)

func writeGone(w http.ResponseWriter) {
	writeErrorBody(w, http.StatusGone, "GoneException", goneBody)
}

func writeTooLarge(w http.ResponseWriter) {
	writeErrorBody(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException", tooLargeBody)
}
