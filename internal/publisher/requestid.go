package publisher

import (
	"context"
	"crypto/rand"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/wsgateway/wsgateway/internal/logctx"
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

// RequestIDField is the request id as a log attribute: a logger wrapped
// with it (logctx.Wrap) tags every line logged during a call with
// request_id, so that the lines the fan-out logs during a publish can be
// told apart from another publish's.
var RequestIDField = logctx.Field{Key: "request_id", From: RequestID}

// NewRequestIDHandler wraps h with RequestIDField; wrapping twice logs the
// id once.
func NewRequestIDHandler(h slog.Handler) slog.Handler {
	return logctx.Wrap(h, RequestIDField)
}
