package fanout_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// recorder is a fanout.Observer that remembers every call.
type recorder struct {
	mu        sync.Mutex
	published []published
	lookups   int
	retries   int
}

type published struct {
	res fanout.Result
	err error
	d   time.Duration
}

func (r *recorder) PublishDone(res fanout.Result, err error, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, published{res, err, d})
}

func (r *recorder) LookupDone(time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
}

func (r *recorder) Retry() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries++
}

func TestObserver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		msg         fanout.Message
		failRead    int
		script      map[string][]int
		wantErr     error
		wantLookups int
		wantRetries int
	}{
		{
			name:        "every page read and every retry",
			msg:         message,
			script:      map[string][]int{"conn-1000": {429, 503, 200}, "conn-1004": {500}},
			wantLookups: 3, // five subscribers, pages of two
			wantRetries: 4, // two for conn-1000, MaxAttempts-1 for conn-1004
		},
		{
			name:    "invalid: nothing read",
			msg:     fanout.Message{Topic: "bad topic", Data: message.Data},
			wantErr: fanout.ErrInvalid,
		},
		{
			name:        "store down on the first read",
			msg:         message,
			failRead:    1,
			wantErr:     store.ErrUnavailable,
			wantLookups: 1,
		},
		{
			name:        "store down on the second read",
			msg:         message,
			failRead:    2,
			wantErr:     store.ErrUnavailable,
			wantLookups: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubs(message.Topic, 5)
			s.failRead = tt.failRead
			rec := &recorder{}
			opts := testOptions()
			opts.PageSize = 2
			opts.Observer = rec

			res, err := fanout.New(s, newPoster(t, &mgmtAPI{script: tt.script}), opts).Publish(t.Context(), tt.msg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Publish = %v, want %v", err, tt.wantErr)
			}
			if len(rec.published) != 1 {
				t.Fatalf("PublishDone called %d times, want once", len(rec.published))
			}
			if p := rec.published[0]; p.res != res || p.err != err || p.d <= 0 {
				t.Errorf("PublishDone(%+v, %v, %v), want what Publish returned, %+v and %v, and a duration", p.res, p.err, p.d, res, err)
			}
			if rec.lookups != tt.wantLookups || rec.retries != tt.wantRetries {
				t.Errorf("lookups, retries = %d, %d; want %d, %d", rec.lookups, rec.retries, tt.wantLookups, tt.wantRetries)
			}
		})
	}
}
