package publisher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

func TestToStatus(t *testing.T) {
	t.Parallel()
	backend := errors.New("dial tcp 10.0.0.7:443: connection refused")
	for _, tc := range []struct {
		err         error
		code        codes.Code
		wantMessage string // must appear
		hidden      string // must not appear
	}{
		{fmt.Errorf("%w: topic is empty", fanout.ErrInvalid), codes.InvalidArgument, "topic is empty", ""},
		{fmt.Errorf("%w: page_size", errInvalidRequest), codes.InvalidArgument, "page_size", ""},
		// Too large is the caller's mistake, not a quota to retry.
		{fmt.Errorf("%w: over 786432 bytes", errRequestTooLarge), codes.InvalidArgument, "786432", ""},
		{fmt.Errorf("%w (10s)", errCallTimeout), codes.DeadlineExceeded, "10s", ""},
		{fmt.Errorf("list: %w", store.ErrInvalidPageToken), codes.InvalidArgument, "page_token", ""},
		{fmt.Errorf("query: %w: %w", store.ErrUnavailable, backend), codes.Unavailable, "retry", "10.0.0.7"},
		{fmt.Errorf("publish: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline", ""},
		{context.Canceled, codes.Canceled, "canceled", ""},
		{backend, codes.Internal, "internal error", "10.0.0.7"},
		{status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied, "no", ""},
	} {
		st := status.Convert(toStatus(tc.err))
		if st.Code() != tc.code || !strings.Contains(st.Message(), tc.wantMessage) ||
			(tc.hidden != "" && strings.Contains(st.Message(), tc.hidden)) {
			t.Errorf("toStatus(%v) = %v %q, want %v containing %q without %q", tc.err, st.Code(), st.Message(), tc.code, tc.wantMessage, tc.hidden)
		}
		// The original stays reachable for the log line.
		if got := toStatus(tc.err); !errors.Is(got, tc.err) {
			t.Errorf("toStatus(%v) lost the original error", tc.err)
		}
	}
}
