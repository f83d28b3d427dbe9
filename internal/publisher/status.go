package publisher

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// Errors of the edge itself.
var (
	// errInvalidRequest marks request fields the edge itself rejects.
	errInvalidRequest = errors.New("invalid request")
	// errRequestTooLarge: over MaxRESTBodyBytes (REST, 413) or
	// MaxGRPCRequestBytes (gRPC). The caller's mistake, not a quota:
	// retrying the same request cannot succeed, so it must not be
	// ResourceExhausted (429, "retry later"), grpc-go's code for it.
	errRequestTooLarge = errors.New("request too large")
	// errCallTimeout: the call ran out of Config.CallTimeout, the deadline
	// the server sets when the caller set none (or a later one).
	errCallTimeout = errors.New("the call did not finish within the server's call timeout")
)

// statusTable is the one translation from domain errors to gRPC codes;
// grpc-gateway maps those codes to HTTP statuses (400, 503, 504, …).
// The first match wins: a deadline that cut a store call is the caller's
// deadline, not an outage. A fixed message replaces the error text where that text would describe
// the backend (endpoints, AWS request ids) rather than the caller's mistake.
var statusTable = []struct {
	err     error
	code    codes.Code
	message string
}{
	{errInvalidRequest, codes.InvalidArgument, ""},
	{errRequestTooLarge, codes.InvalidArgument, ""},
	// Not Unavailable: a publish cut short may have reached some
	// subscribers, and clients retry Unavailable on their own.
	{errCallTimeout, codes.DeadlineExceeded, ""},
	{fanout.ErrInvalid, codes.InvalidArgument, ""},
	{store.ErrInvalidArgument, codes.InvalidArgument, ""},
	{store.ErrInvalidPageToken, codes.InvalidArgument, "invalid page_token: pass next_page_token from the previous page unchanged"},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded"},
	{context.Canceled, codes.Canceled, "canceled"},
	{store.ErrUnavailable, codes.Unavailable, "store unavailable, retry with backoff"},
	// The connections are still open; closing is idempotent, so the retry
	// clients make of Unavailable on their own is safe.
	{fanout.ErrNotClosed, codes.Unavailable, "the management API did not close every connection, retry with backoff"},
}

// toStatus converts err for the wire. Errors the caller can act on keep
// their message; anything unexpected becomes a bare Internal so no detail
// of the backend leaks (the interceptor logs the original).
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range statusTable {
		if errors.Is(err, e.err) {
			msg := e.message
			if msg == "" {
				msg = err.Error()
			}
			return &statusError{status.New(e.code, msg), err}
		}
	}
	return &statusError{status.New(codes.Internal, "internal error"), err}
}

// statusError is what the client sees (st) joined to what the log needs
// (err, with the backend's detail).
type statusError struct {
	st  *status.Status
	err error
}

func (e *statusError) Error() string              { return e.err.Error() }
func (e *statusError) Unwrap() error              { return e.err }
func (e *statusError) GRPCStatus() *status.Status { return e.st }
