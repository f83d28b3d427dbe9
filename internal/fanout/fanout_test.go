package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

var message = fanout.Message{Topic: "orders.eu", Data: json.RawMessage(`{"n":1}`)}

// Every delivery outcome, through the real SDK client against a server
// answering like API Gateway.
func TestPublishOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		script      map[string][]int
		callTimeout time.Duration
		deleteErr   error
		want        fanout.Result
		wantDeleted []string
		wantTries   map[string]int // posts per connection, where it matters
	}{
		{
			name: "all delivered",
			want: fanout.Result{Delivered: 3},
		},
		{
			name:        "gone connection is deleted, not the others",
			script:      map[string][]int{"conn-1001": {410}},
			want:        fanout.Result{Delivered: 2, Gone: 1},
			wantDeleted: []string{"conn-1001"},
			wantTries:   map[string]int{"conn-1001": 1},
		},
		{
			name:        "gone stays gone when the cleanup fails",
			script:      map[string][]int{"conn-1002": {410}},
			deleteErr:   fmt.Errorf("%w: table throttled", store.ErrUnavailable),
			want:        fanout.Result{Delivered: 2, Gone: 1},
			wantDeleted: []string{"conn-1002"},
		},
		{
			name:      "throttled twice, then delivered",
			script:    map[string][]int{"conn-1000": {429, 429, 200}},
			want:      fanout.Result{Delivered: 3},
			wantTries: map[string]int{"conn-1000": 3},
		},
		{
			name:      "server error once, then delivered",
			script:    map[string][]int{"conn-1000": {503, 200}},
			want:      fanout.Result{Delivered: 3},
			wantTries: map[string]int{"conn-1000": 2},
		},
		{
			name:      "always 500 fails after MaxAttempts",
			script:    map[string][]int{"conn-1000": {500}},
			want:      fanout.Result{Delivered: 2, Failed: 1},
			wantTries: map[string]int{"conn-1000": 3},
		},
		{
			name:      "forbidden is not retried",
			script:    map[string][]int{"conn-1000": {403}},
			want:      fanout.Result{Delivered: 2, Failed: 1},
			wantTries: map[string]int{"conn-1000": 1},
		},
		{
			name:      "too large is not retried",
			script:    map[string][]int{"conn-1000": {413}},
			want:      fanout.Result{Delivered: 2, Failed: 1},
			wantTries: map[string]int{"conn-1000": 1},
		},
		{
			name:   "hanging post is cut by CallTimeout and retried",
			script: map[string][]int{"conn-1000": {hang}},
			// Long enough for every post to reach the server on a
			// loaded machine (at 50 ms the other posts were cut too; at
			// 300 ms, with four test binaries on two cores, a retry was
			// cut before the server had read it, so it counted two
			// tries), short enough to wait out three times.
			callTimeout: time.Second,
			want:        fanout.Result{Delivered: 2, Failed: 1},
			wantTries:   map[string]int{"conn-1000": 3},
		},
		{
			name:        "every outcome at once",
			script:      map[string][]int{"conn-1000": {410}, "conn-1001": {429, 200}, "conn-1002": {403}},
			want:        fanout.Result{Delivered: 1, Gone: 1, Failed: 1},
			wantDeleted: []string{"conn-1000"},
			wantTries:   map[string]int{"conn-1000": 1, "conn-1001": 2, "conn-1002": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubs(message.Topic, 3)
			s.deleteErr = tt.deleteErr
			api := &mgmtAPI{script: tt.script}
			opts := testOptions()
			if tt.callTimeout > 0 {
				opts.CallTimeout = tt.callTimeout
			}

			// A bound, so that a post nothing times out fails the test
			// rather than hanging it.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			got, err := fanout.New(s, newPoster(t, api), opts).Publish(ctx, message)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			tt.want.MessageID = "msg-1"
			if got != tt.want {
				t.Errorf("Result = %+v, want %+v", got, tt.want)
			}
			if d := s.deletedIDs(); !slices.Equal(d, tt.wantDeleted) {
				t.Errorf("deleted connections = %q, want %q", d, tt.wantDeleted)
			}
			tries := api.attempts()
			for id, want := range tt.wantTries {
				if tries[id] != want {
					t.Errorf("%s got %d posts, want %d", id, tries[id], want)
				}
			}
			for _, id := range s.ids {
				if tries[id] == 0 {
					t.Errorf("%s got no post", id)
				}
			}
		})
	}
}

// The envelope is built once: every subscriber gets the same bytes, in the
// contract's shape.
func TestPublishEnvelope(t *testing.T) {
	t.Parallel()
	s := newSubs("orders.eu", 5)
	api := &mgmtAPI{}
	m := fanout.Message{
		Topic:      "orders.eu",
		Data:       json.RawMessage(`{"order": 7, "items": ["a", "b"]}`),
		Attributes: map[string]string{"source": "billing", "priority": "high"},
	}

	if _, err := fanout.New(s, newPoster(t, api), testOptions()).Publish(t.Context(), m); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	const want = `{"type":"message","topic":"orders.eu","id":"msg-1","data":{"order":7,"items":["a","b"]},` +
		`"attributes":{"priority":"high","source":"billing"},"publishTime":"2025-03-01T10:00:00Z"}`
	got := api.received()
	if len(got) != len(s.ids) {
		t.Fatalf("%d connections got posts, want %d", len(got), len(s.ids))
	}
	for id, bodies := range got {
		if len(bodies) != 1 || string(bodies[0]) != want {
			t.Errorf("%s got %q, want exactly one %s", id, bodies, want)
		}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(want), &fields); err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(fields)); !slices.Equal(keys, []string{"attributes", "data", "id", "publishTime", "topic", "type"}) {
		t.Errorf("envelope fields = %q", keys)
	}
}

// A topic with more subscribers than a page reaches each exactly once.
func TestPublishPaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subscribers, pageSize, wantReads int
	}{
		{25, 7, 4},
		{21, 7, 3},
		{1, 1000, 1},
		{0, 10, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d by %d", tt.subscribers, tt.pageSize), func(t *testing.T) {
			t.Parallel()
			s := newSubs(message.Topic, tt.subscribers)
			api := &mgmtAPI{}
			opts := testOptions()
			opts.PageSize = tt.pageSize
			opts.Concurrency = 3

			got, err := fanout.New(s, newPoster(t, api), opts).Publish(t.Context(), message)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if want := (fanout.Result{MessageID: "msg-1", Delivered: tt.subscribers}); got != want {
				t.Errorf("Result = %+v, want %+v", got, want)
			}
			if s.readCount() != tt.wantReads {
				t.Errorf("%d page reads, want %d", s.readCount(), tt.wantReads)
			}
			for _, limit := range s.limits {
				if limit != tt.pageSize {
					t.Errorf("page read with limit %d, want %d", limit, tt.pageSize)
				}
			}
			tries := api.attempts()
			if len(tries) != tt.subscribers {
				t.Errorf("%d connections got posts, want %d", len(tries), tt.subscribers)
			}
			for _, id := range s.ids {
				if tries[id] != 1 {
					t.Errorf("%s got %d posts, want 1", id, tries[id])
				}
			}
		})
	}
}

func TestPublishConcurrencyBound(t *testing.T) {
	t.Parallel()
	for _, concurrency := range []int{1, 4} {
		t.Run(fmt.Sprint(concurrency), func(t *testing.T) {
			t.Parallel()
			s := newSubs(message.Topic, 24)
			// Each post waits for the pool's full width, so the test sees
			// it; a pool wider than the bound would show more.
			api := &mgmtAPI{waitFor: int32(concurrency)}
			opts := testOptions()
			opts.Concurrency = concurrency
			opts.PageSize = 5

			got, err := fanout.New(s, newPoster(t, api), opts).Publish(t.Context(), message)
			if err != nil || got.Delivered != 24 {
				t.Fatalf("Publish = %+v, %v; want 24 delivered", got, err)
			}
			if m := api.maxInflight.Load(); m != int32(concurrency) {
				t.Errorf("at most %d posts were in flight, want exactly %d", m, concurrency)
			}
		})
	}
}

// The caller's deadline bounds the whole publish, whatever CallTimeout is;
// what was not delivered by then counts as failed.
func TestPublishDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		concurrency int
		hanging     []string
		want        fanout.Result
		wantPosts   int
	}{
		{
			name:        "in-flight posts are cut",
			concurrency: 10,
			hanging:     []string{"conn-1003", "conn-1005"},
			want:        fanout.Result{Delivered: 8, Failed: 2},
			wantPosts:   10,
		},
		{
			name:        "queued subscribers are not posted",
			concurrency: 2,
			hanging:     []string{"conn-1000", "conn-1001"},
			want:        fanout.Result{Failed: 10},
			wantPosts:   2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubs(message.Topic, 10)
			api := &mgmtAPI{script: map[string][]int{}}
			for _, id := range tt.hanging {
				api.script[id] = []int{hang}
			}
			opts := testOptions()
			opts.Concurrency = tt.concurrency
			opts.CallTimeout = time.Hour
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()

			got, err := fanout.New(s, newPoster(t, api), opts).Publish(ctx, message)
			if err != nil {
				t.Fatalf("Publish: %v (the deadline is not an error once subscribers were read)", err)
			}
			tt.want.MessageID = "msg-1"
			if got != tt.want {
				t.Errorf("Result = %+v, want %+v", got, tt.want)
			}
			if n := api.posts(); n != tt.wantPosts {
				t.Errorf("%d posts, want %d", n, tt.wantPosts)
			}
		})
	}
}

func TestPublishInvalid(t *testing.T) {
	t.Parallel()
	many := map[string]string{}
	for i := range fanout.MaxAttributes + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	tests := []struct {
		name    string
		m       fanout.Message
		wantMsg string
	}{
		{"empty topic", fanout.Message{Data: json.RawMessage(`1`)}, "topic is empty"},
		{"bad topic", fanout.Message{Topic: "orders/eu", Data: json.RawMessage(`1`)}, "must match"},
		{"topic too long", fanout.Message{Topic: strings.Repeat("a", 129), Data: json.RawMessage(`1`)}, "must match"},
		{"nil data", fanout.Message{Topic: "t"}, "data is required"},
		{"invalid JSON data", fanout.Message{Topic: "t", Data: json.RawMessage(`{"a":`)}, "not valid JSON"},
		{"two JSON values", fanout.Message{Topic: "t", Data: json.RawMessage(`1 2`)}, "not valid JSON"},
		{"too many attributes", fanout.Message{Topic: "t", Data: json.RawMessage(`1`), Attributes: many}, "65 attributes, at most 64"},
		{"empty attribute key", fanout.Message{Topic: "t", Data: json.RawMessage(`1`), Attributes: map[string]string{"": "v"}}, "attribute key is empty"},
		{"attribute key too long", fanout.Message{Topic: "t", Data: json.RawMessage(`1`), Attributes: map[string]string{strings.Repeat("k", 129): "v"}}, "is 129 bytes, at most 128"},
		{"attribute value too long", fanout.Message{Topic: "t", Data: json.RawMessage(`1`), Attributes: map[string]string{"k": strings.Repeat("v", 1025)}}, `attribute "k" is 1025 bytes, at most 1024`},
		{"attribute value not UTF-8", fanout.Message{Topic: "t", Data: json.RawMessage(`1`), Attributes: map[string]string{"k": "\xff"}}, `attribute "k" is not valid UTF-8`},
		{"envelope over 128 KB", fanout.Message{Topic: "t", Data: json.RawMessage(`"` + strings.Repeat("x", 131072) + `"`)}, "API Gateway's limit is 131072"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubs(tt.m.Topic, 3)
			poster := &countingPoster{}

			got, err := fanout.New(s, poster, testOptions()).Publish(t.Context(), tt.m)
			if !errors.Is(err, fanout.ErrInvalid) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.wantMsg)
			}
			if got != (fanout.Result{}) {
				t.Errorf("Result = %+v, want zero", got)
			}
			if n := s.readCount(); n != 0 {
				t.Errorf("%d store reads, want none", n)
			}
			if n := poster.n.Load(); n != 0 {
				t.Errorf("%d posts, want none", n)
			}
		})
	}
}

// Messages at every limit pass.
func TestValidateAtLimits(t *testing.T) {
	t.Parallel()
	full := map[string]string{strings.Repeat("k", fanout.MaxAttributeKeyBytes): strings.Repeat("v", fanout.MaxAttributeValueBytes)}
	for i := range fanout.MaxAttributes - 1 {
		full[fmt.Sprint("k", i)] = ""
	}
	tests := []struct {
		name string
		m    fanout.Message
	}{
		{"null data", fanout.Message{Topic: "t", Data: json.RawMessage(`null`)}},
		{"longest topic", fanout.Message{Topic: strings.Repeat("a", 128), Data: json.RawMessage(`[]`)}},
		{"attributes at every limit", fanout.Message{Topic: "a.b:c-d_e", Data: json.RawMessage(` {"x": "ü"} `), Attributes: full}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &mgmtAPI{}
			got, err := fanout.New(newSubs(tt.m.Topic, 1), newPoster(t, api), testOptions()).Publish(t.Context(), tt.m)
			if err != nil || got.Delivered != 1 {
				t.Errorf("Publish = %+v, %v; want it delivered", got, err)
			}
		})
	}
}

// An envelope of exactly 131072 bytes is posted whole; one byte more is
// refused before anything is read or posted.
func TestPublishEnvelopeLimit(t *testing.T) {
	t.Parallel()
	base, err := wsproto.EncodeMessage(wsproto.Message{Topic: "big", ID: "msg-1", Data: json.RawMessage(`""`), PublishTime: publishTime})
	if err != nil {
		t.Fatal(err)
	}
	data := func(envelopeSize int) json.RawMessage {
		return json.RawMessage(`"` + strings.Repeat("x", envelopeSize-len(base)) + `"`)
	}

	t.Run("at the limit", func(t *testing.T) {
		t.Parallel()
		s := newSubs("big", 2)
		api := &mgmtAPI{}
		got, err := fanout.New(s, newPoster(t, api), testOptions()).Publish(t.Context(), fanout.Message{Topic: "big", Data: data(fanout.MaxEnvelopeBytes)})
		if err != nil || got.Delivered != 2 {
			t.Fatalf("Publish = %+v, %v; want 2 delivered", got, err)
		}
		for id, bodies := range api.received() {
			if len(bodies[0]) != fanout.MaxEnvelopeBytes {
				t.Errorf("%s got %d bytes, want %d", id, len(bodies[0]), fanout.MaxEnvelopeBytes)
			}
		}
	})
	t.Run("one byte over", func(t *testing.T) {
		t.Parallel()
		s := newSubs("big", 2)
		poster := &countingPoster{}
		_, err := fanout.New(s, poster, testOptions()).Publish(t.Context(), fanout.Message{Topic: "big", Data: data(fanout.MaxEnvelopeBytes + 1)})
		if !errors.Is(err, fanout.ErrInvalid) || !strings.Contains(err.Error(), "envelope is 131073 bytes") {
			t.Fatalf("err = %v, want ErrInvalid naming 131073 bytes", err)
		}
		if s.readCount() != 0 || poster.n.Load() != 0 {
			t.Errorf("%d store reads and %d posts, want none", s.readCount(), poster.n.Load())
		}
	})
}

func TestPublishStoreErrors(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		failRead  int
		readErr   error
		wantErr   error
		want      fanout.Result
		wantPosts int32
	}{
		{
			name:     "first page unavailable",
			failRead: 1,
			readErr:  fmt.Errorf("query: %w", store.ErrUnavailable),
			wantErr:  store.ErrUnavailable,
		},
		{
			name:     "first page fails with an unclassified error",
			failRead: 1,
			readErr:  errBoom,
			wantErr:  store.ErrUnavailable,
		},
		{
			name:      "later page fails after posting the first",
			failRead:  2,
			wantErr:   store.ErrUnavailable,
			want:      fanout.Result{Delivered: 4},
			wantPosts: 4,
		},
		{
			name:    "caller gave up before the read",
			ctx:     canceled,
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubs(message.Topic, 10)
			s.failRead, s.readErr = tt.failRead, tt.readErr
			poster := &countingPoster{}
			opts := testOptions()
			opts.PageSize = 4
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx
			}

			got, err := fanout.New(s, poster, opts).Publish(ctx, message)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.readErr != nil && !errors.Is(err, tt.readErr) {
				t.Errorf("err = %v lost the store's error %v", err, tt.readErr)
			}
			tt.want.MessageID = "msg-1"
			if got != tt.want {
				t.Errorf("Result = %+v, want %+v", got, tt.want)
			}
			if n := poster.n.Load(); n != tt.wantPosts {
				t.Errorf("%d posts, want %d", n, tt.wantPosts)
			}
		})
	}
}

func TestPublishDefaultID(t *testing.T) {
	t.Parallel()
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	s := newSubs(message.Topic, 1)
	api := &mgmtAPI{}
	opts := testOptions()
	opts.NewID = nil
	f := fanout.New(s, newPoster(t, api), opts)

	first, err := f.Publish(t.Context(), message)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.Publish(t.Context(), message)
	if err != nil {
		t.Fatal(err)
	}
	if !uuid4.MatchString(first.MessageID) || first.MessageID == second.MessageID {
		t.Errorf("message ids %q and %q, want two distinct UUIDv4s", first.MessageID, second.MessageID)
	}
	var env wsproto.Message
	if err := json.Unmarshal(api.received()["conn-1000"][0], &env); err != nil || env.ID != first.MessageID {
		t.Errorf("posted envelope id = %q (%v), want the Result's %q", env.ID, err, first.MessageID)
	}
}

// One Fanout serves concurrent publishes (run with -race).
func TestPublishConcurrentCalls(t *testing.T) {
	t.Parallel()
	s := newSubs(message.Topic, 20)
	api := &mgmtAPI{script: map[string][]int{"conn-1007": {http.StatusGone}}}
	f := fanout.New(s, newPoster(t, api), testOptions())

	results := make(chan fanout.Result, 4)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			r, err := f.Publish(t.Context(), message)
			results <- r
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if r := <-results; r.Delivered+r.Gone != 20 || r.Gone != 1 {
			t.Errorf("Result = %+v, want 19 delivered and 1 gone", r)
		}
	}
}

func BenchmarkPublish(b *testing.B) {
	s := newSubs(message.Topic, 1000)
	f := fanout.New(s, newPoster(b, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), fanout.Options{
		Logger: slog.New(slog.DiscardHandler),
	})
	for b.Loop() {
		if r, err := f.Publish(b.Context(), message); err != nil || r.Delivered != 1000 {
			b.Fatalf("Publish = %+v, %v", r, err)
		}
	}
}
