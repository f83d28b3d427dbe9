package publisher

import (
	"context"
	"crypto/rand"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RequestIDKey is the gRPC metadata key of a call's request id, in both
// directions. The REST facade maps the HTTP header X-Request-Id to it and
// back.
const RequestIDKey = "x-request-id"

// maxRequestIDLen bounds a caller's id: it goes into every log line of the
// call.
const maxRequestIDLen = 128

type requestIDCtxKey struct{}

// RequestID returns the request id of the call ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDCtxKey{}).(string)
	return id
}

// assignRequestIDs gives every call a request id: the caller's x-request-id
// when it is usable (so that one id can follow a request through several
// services), a fresh one otherwise. The id is sent back as the response
// header x-request-id, so a caller without one can still quote it.
func assignRequestIDs() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var id string
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(RequestIDKey); len(v) > 0 && usableRequestID(v[0]) {
				id = v[0]
			}
		}
		if id == "" {
			id = rand.Text()
		}
		// Fails only when the transport has already sent headers, which
		// cannot have happened before the handler ran.
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, id))
		return handler(context.WithValue(ctx, requestIDCtxKey{}, id), req)
	}
}

// usableRequestID accepts visible ASCII up to maxRequestIDLen bytes: enough
// for any tracing id, and nothing that could forge or break a log line.
func usableRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// RequestIDHandler is a slog.Handler that adds request_id to every record
// logged with the context of a call, so that the lines the fan-out logs
// during a publish can be told apart from another publish's.
type RequestIDHandler struct {
	slog.Handler
}

// NewRequestIDHandler wraps h. It returns h itself if h is already a
// RequestIDHandler, so wrapping twice does not log the id twice.
func NewRequestIDHandler(h slog.Handler) *RequestIDHandler {
	if r, ok := h.(*RequestIDHandler); ok {
		return r
	}
	return &RequestIDHandler{h}
}

// Handle implements slog.Handler.
func (h *RequestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *RequestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &RequestIDHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h *RequestIDHandler) WithGroup(name string) slog.Handler {
	return &RequestIDHandler{h.Handler.WithGroup(name)}
}
