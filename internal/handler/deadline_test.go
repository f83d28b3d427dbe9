package handler

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// stalled is a store that never answers: every call waits until its
// context is done, as a call to an unreachable DynamoDB without a deadline
// would wait for ever.
type stalled struct{}

func (stalled) PutConnection(ctx context.Context, _ store.Connection) error { return wait(ctx) }
func (stalled) GetConnection(ctx context.Context, _ string) (store.Connection, error) {
	return store.Connection{}, wait(ctx)
}
func (stalled) DeleteConnection(ctx context.Context, _ string) error         { return wait(ctx) }
func (stalled) Subscribe(ctx context.Context, _, _ string, _ []string) error { return wait(ctx) }
func (stalled) Unsubscribe(ctx context.Context, _ string, _ []string) error  { return wait(ctx) }
func (stalled) Topics(ctx context.Context, _ string) ([]string, error)       { return nil, wait(ctx) }

func wait(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// within runs call and fails the test if it has not returned after limit:
// a route without a deadline would otherwise hang the test.
func within[T any](t *testing.T, limit time.Duration, call func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- call() }()
	select {
	case v := <-done:
		return v
	case <-time.After(limit):
		t.Fatalf("the route still waits on the stalled store after %v: it has no deadline", limit)
		panic("unreachable")
	}
}

type outcome struct {
	resp events.APIGatewayProxyResponse
	err  error
}

// Every route call ends within CallTimeout when the store stalls: the
// message routes answer an unavailable frame (the client may retry),
// $connect refuses with 500, $disconnect fails the invocation.
func TestRoutesGiveUpOnAStalledStore(t *testing.T) {
	t.Parallel()
	const timeout = 50 * time.Millisecond
	tests := []struct {
		name string
		call func(*Routes, context.Context) (events.APIGatewayProxyResponse, error)
		// check judges the outcome.
		check func(t *testing.T, o outcome)
	}{
		{"$connect", func(r *Routes, ctx context.Context) (events.APIGatewayProxyResponse, error) {
			return r.Connect(ctx, decodeEvent(t, connectEvent))
		}, func(t *testing.T, o outcome) {
			if o.resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500 so that the client reconnects", o.resp.StatusCode)
			}
		}},
		{"$disconnect", func(r *Routes, ctx context.Context) (events.APIGatewayProxyResponse, error) {
			return r.Disconnect(ctx, decodeEvent(t, disconnectEvent))
		}, func(t *testing.T, o outcome) {
			if !errors.Is(o.err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want the deadline, for Lambda to report", o.err)
			}
		}},
		{"subscribe", func(r *Routes, ctx context.Context) (events.APIGatewayProxyResponse, error) {
			return r.Subscribe(ctx, message(t, "subscribe", `{"action":"subscribe","topic":"news"}`))
		}, wantUnavailable},
		{"unsubscribe", func(r *Routes, ctx context.Context) (events.APIGatewayProxyResponse, error) {
			return r.Unsubscribe(ctx, message(t, "unsubscribe", `{"action":"unsubscribe","topic":"news"}`))
		}, wantUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewRoutes(stalled{}, discard())
			r.CallTimeout = timeout
			start := time.Now()
			o := within(t, 10*time.Second, func() outcome {
				resp, err := tt.call(r, context.Background())
				return outcome{resp, err}
			})
			if took := time.Since(start); took < timeout {
				t.Errorf("answered after %v, before the %v deadline: the store did not stall", took, timeout)
			}
			tt.check(t, o)
		})
	}
}

func wantUnavailable(t *testing.T, o outcome) {
	t.Helper()
	if f := answered(t, o.resp, o.err); f.Type != wsproto.TypeError || f.Code != wsproto.CodeUnavailable {
		t.Errorf("answer = %+v, want an %s error frame", f, wsproto.CodeUnavailable)
	}
}

// An incoming deadline earlier than CallTimeout (on AWS, the function's)
// is the one that counts.
func TestRoutesKeepAnEarlierDeadline(t *testing.T) {
	t.Parallel()
	r := NewRoutes(stalled{}, discard())
	r.CallTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	o := within(t, 10*time.Second, func() outcome {
		resp, err := r.Subscribe(ctx, message(t, "subscribe", `{"action":"subscribe","topic":"news"}`))
		return outcome{resp, err}
	})
	wantUnavailable(t, o)
}

// Configure applies CALL_TIMEOUT, and an unset one leaves the default.
func TestConfigureCallTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		set, want time.Duration
	}{
		{0, DefaultCallTimeout},
		{750 * time.Millisecond, 750 * time.Millisecond},
	} {
		r := NewRoutes(store.NewMemory(), discard())
		r.Configure(config.Config{CallTimeout: tc.set, ConnectTokenSecret: "0123456789abcdef0123456789abcdef"})
		if r.CallTimeout != tc.want {
			t.Errorf("CALL_TIMEOUT %v: CallTimeout = %v, want %v", tc.set, r.CallTimeout, tc.want)
		}
	}
	if r := NewRoutes(store.NewMemory(), discard()); r.CallTimeout != DefaultCallTimeout {
		t.Errorf("NewRoutes: CallTimeout = %v, want the default %v", r.CallTimeout, DefaultCallTimeout)
	}
}

// On AWS the incoming deadline is the function's timeout, which CALL_TIMEOUT
// matches by default: a route call gives up DeadlineMargin before it, so
// that a function stuck on a stalled store still answers (an error frame,
// a 500) instead of being killed mid-call. A call arriving with less than
// twice the margin left keeps half of what is left.
func TestRoutesAnswerBeforeTheIncomingDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		left time.Duration // before the incoming deadline
		want time.Duration // of it still left when the route has answered
	}{
		{"a function's timeout", 2*DeadlineMargin + 500*time.Millisecond, DeadlineMargin},
		{"little time left", DeadlineMargin, DeadlineMargin / 2},
	} {
		for _, route := range []struct {
			name string
			call func(*Routes, context.Context) (events.APIGatewayProxyResponse, error)
			ok   func(outcome) bool
		}{
			{"$connect", func(r *Routes, ctx context.Context) (events.APIGatewayProxyResponse, error) {
				return r.Connect(ctx, decodeEvent(t, connectEvent))
			}, func(o outcome) bool { return o.resp.StatusCode == http.StatusInternalServerError }},
			{"subscribe", func(r *Routes, ctx context.Context) (events.APIGatewayProxyResponse, error) {
				return r.Subscribe(ctx, message(t, "subscribe", `{"action":"subscribe","topic":"news"}`))
			}, func(o outcome) bool {
				f := answered(t, o.resp, o.err)
				return f.Type == wsproto.TypeError && f.Code == wsproto.CodeUnavailable
			}},
		} {
			t.Run(tc.name+"/"+route.name, func(t *testing.T) {
				t.Parallel()
				r := NewRoutes(stalled{}, discard())
				r.CallTimeout = tc.left // as long as the function's timeout: the default on AWS
				ctx, cancel := context.WithTimeout(context.Background(), tc.left)
				defer cancel()
				deadline, _ := ctx.Deadline()
				o := within(t, 10*time.Second, func() outcome {
					resp, err := route.call(r, ctx)
					return outcome{resp, err}
				})
				left := time.Until(deadline)
				// Scheduling on a loaded machine may eat some of the margin;
				// an answer that waited for the incoming deadline leaves none.
				if left < tc.want/2 || left > tc.want+100*time.Millisecond {
					t.Errorf("answered with %v of the incoming deadline left, want about %v", left, tc.want)
				}
				if !route.ok(o) {
					t.Errorf("outcome = %+v, want the route's answer to a store that did not answer in time", o)
				}
			})
		}
	}
}
