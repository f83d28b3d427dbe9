package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	smithytime "github.com/aws/smithy-go/time"
	"github.com/coder/websocket"
)

// manage answers every request that is not the WebSocket endpoint the way
// API Gateway's front door does, in its order: the caller's latency, then
// authentication, routing, the account's quota, and only then the call.
//
// Every answer carries x-amzn-RequestId, as AWS's do: SDKs report it with
// each result and error, and support asks for it.
func (e *Emulator) manage(w http.ResponseWriter, r *http.Request, path string, staged bool) {
	w.Header().Set("X-Amzn-Requestid", newRequestID())
	// Each request waits on its own goroutine, so latency delays calls
	// without queueing them.
	if e.latency > 0 && smithytime.SleepWithContext(r.Context(), e.latency) != nil {
		return // the caller has gone
	}
	// Signatures are required but not verified: the emulator knows no keys.
	if !signed(r) {
		writeErrorBody(w, http.StatusForbidden, "MissingAuthenticationTokenException", missingTokenBody)
		return
	}
	id, ok := strings.CutPrefix(path, "/@connections/")
	if !staged || !ok || id == "" || !isManagementMethod(r.Method) {
		// A wrong stage or path is a 403 on AWS, not a 404.
		e.log.Info("no management route: the API is at "+e.prefix+"/@connections/{id}", "method", r.Method, "path", r.URL.Path)
		writeErrorBody(w, http.StatusForbidden, "ForbiddenException", forbiddenBody)
		return
	}
	if e.quota != nil && !e.quota.Allow() {
		writeThrottled(w)
		return
	}
	if e.callDice != nil {
		switch u := e.callDice.roll(); {
		case u < e.faults.Throttle:
			writeThrottled(w)
			return
		case u < e.faults.Throttle+e.faults.ServerError:
			writeErrorBody(w, http.StatusInternalServerError, "InternalServerErrorException", serverErrorBody)
			return
		}
	}
	switch r.Method {
	case http.MethodPost:
		e.post(w, r, id)
	case http.MethodGet:
		e.get(w, id)
	case http.MethodDelete:
		e.delete(w, id)
	}
}

func isManagementMethod(m string) bool {
	return m == http.MethodPost || m == http.MethodGet || m == http.MethodDelete
}

// signed reports whether r carries a SigV4 signature, in its Authorization
// header or as a presigned URL.
func signed(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") ||
		strings.Contains(r.URL.RawQuery, "X-Amz-Signature=")
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
		// The caller stopped sending; there is no one to answer.
		writeErrorBody(w, http.StatusBadRequest, "BadRequestException", []byte(`{"message":"reading the body failed"}`))
		return
	}
	if buf.Len() > maxPayloadBytes {
		writeTooLarge(w)
		return
	}
	c := e.lookup(id)
	if c == nil {
		writeGone(w)
		return
	}
	switch err := e.send(c, buf.Bytes()); {
	case err == nil:
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, errBufferFull):
		// The client is not reading: AWS calls that a full client-side
		// buffer and answers 429 at once.
		writeThrottled(w)
	default:
		writeGone(w)
	}
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
func writeErrorBody(w http.ResponseWriter, status int, errorType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", errorType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Preencoded, since some answer the hot path; the messages are AWS's where
// they are known.
var (
	goneBody         = []byte(`{"message":"the connection is gone"}`)
	tooLargeBody     = []byte(`{"message":"the message exceeds the 131072-byte payload limit"}`)
	throttledBody    = []byte(`{"message":"Too Many Requests"}`)
	serverErrorBody  = []byte(`{"message":"Internal server error"}`)
	forbiddenBody    = []byte(`{"message":"Forbidden"}`)
	missingTokenBody = []byte(`{"message":"Missing Authentication Token"}`)
)

func writeGone(w http.ResponseWriter) {
	writeErrorBody(w, http.StatusGone, "GoneException", goneBody)
}

func writeTooLarge(w http.ResponseWriter) {
	writeErrorBody(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException", tooLargeBody)
}

func writeThrottled(w http.ResponseWriter) {
	writeErrorBody(w, http.StatusTooManyRequests, "LimitExceededException", throttledBody)
}
