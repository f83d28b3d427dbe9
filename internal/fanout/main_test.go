package fanout_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"go.uber.org/goleak"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

// TestMain proves that no Publish leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// subs is an in-test fanout.Subscribers: a topic's connection ids, served
// in pages whose token is the index of the next id.
type subs struct {
	topic     string
	ids       []string
	failRead  int   // the failRead-th read (1-based) fails with readErr; 0: none
	readErr   error // default store.ErrUnavailable
	deleteErr error
	users     map[string][]string // user id → connection ids

	mu           sync.Mutex
	reads        int // of the topic's own subscribers, and of users' connections
	patternReads int
	limits       []int
	deleted      []string
}

func newSubs(topic string, n int) *subs {
	s := &subs{topic: topic}
	for i := range n {
		s.ids = append(s.ids, "conn-"+strconv.Itoa(1000+i))
	}
	return s
}

func (s *subs) Subscribers(ctx context.Context, topic string, limit int, pageToken string) (store.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if topic != s.topic {
		// The patterns the topic matches, which nobody holds here: read,
		// but not what reads and failRead count.
		s.patternReads++
		return store.Page{}, ctx.Err()
	}
	s.reads++
	s.limits = append(s.limits, limit)
	if err := ctx.Err(); err != nil {
		return store.Page{}, err
	}
	if s.reads == s.failRead {
		if s.readErr != nil {
			return store.Page{}, s.readErr
		}
		return store.Page{}, store.ErrUnavailable
	}
	start := 0
	if pageToken != "" {
		var err error
		if start, err = strconv.Atoi(pageToken); err != nil {
			return store.Page{}, store.ErrInvalidPageToken
		}
	}
	end := min(start+limit, len(s.ids))
	var page store.Page
	for _, id := range s.ids[start:end] {
		page.Subscriptions = append(page.Subscriptions, store.Subscription{ConnectionID: id, Topic: topic})
	}
	if end < len(s.ids) {
		page.NextToken = strconv.Itoa(end)
	}
	return page, nil
}

// UserConnections serves s.users[userID] in one page.
func (s *subs) UserConnections(ctx context.Context, userID string, limit int, pageToken string) (store.ConnectionPage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.reads == s.failRead {
		return store.ConnectionPage{}, store.ErrUnavailable
	}
	return store.ConnectionPage{ConnectionIDs: slices.Clone(s.users[userID])}, nil
}

// GetConnection knows the topic's subscribers and the users' connections
// that were not deleted.
func (s *subs) GetConnection(ctx context.Context, connectionID string) (store.Connection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.deleted, connectionID) {
		return store.Connection{}, store.ErrNotFound
	}
	if slices.Contains(s.ids, connectionID) {
		return store.Connection{ID: connectionID}, nil
	}
	for _, ids := range s.users {
		if slices.Contains(ids, connectionID) {
			return store.Connection{ID: connectionID}, nil
		}
	}
	return store.Connection{}, store.ErrNotFound
}

func (s *subs) DeleteConnection(ctx context.Context, connectionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = append(s.deleted, connectionID)
	return s.deleteErr
}

func (s *subs) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func (s *subs) deletedIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// hang scripts a post that never answers until the client gives up.
const hang = 0

// errorTypes are the x-amzn-ErrorType values API Gateway answers with.
var errorTypes = map[int]string{
	http.StatusGone:                  "GoneException",
	http.StatusTooManyRequests:       "LimitExceededException",
	http.StatusRequestEntityTooLarge: "PayloadTooLargeException",
	http.StatusForbidden:             "ForbiddenException",
	http.StatusInternalServerError:   "InternalServerErrorException",
}

// mgmtAPI answers @connections posts like API Gateway's management API,
// following a per-connection script of statuses for successive attempts
// (the last one repeats; unscripted connections get 200), and records what
// it received.
type mgmtAPI struct {
	script map[string][]int
	// waitFor, when set, holds each post until that many are in flight (or
	// a short while passes), so that a test sees the pool's full width.
	waitFor int32

	inflight, maxInflight atomic.Int32

	// closeScript is script for DELETE @connections/{id} (unscripted: 204).
	closeScript map[string][]int

	mu     sync.Mutex
	bodies map[string][][]byte
	closes []string
}

func (a *mgmtAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := a.inflight.Add(1)
	defer a.inflight.Add(-1)
	for m := a.maxInflight.Load(); n > m && !a.maxInflight.CompareAndSwap(m, n); m = a.maxInflight.Load() {
	}

	id, ok := strings.CutPrefix(r.URL.Path, "/@connections/")
	body, err := io.ReadAll(r.Body)
	if ok && r.Method == http.MethodDelete {
		a.close(w, id)
		return
	}
	if !ok || r.Method != http.MethodPost || err != nil {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	if a.bodies == nil {
		a.bodies = map[string][][]byte{}
	}
	a.bodies[id] = append(a.bodies[id], body)
	attempt := len(a.bodies[id])
	a.mu.Unlock()

	if a.waitFor > 0 {
		for deadline := time.Now().Add(200 * time.Millisecond); a.inflight.Load() < a.waitFor && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}

	status := http.StatusOK
	if s := a.script[id]; len(s) > 0 {
		status = s[min(attempt, len(s))-1]
	}
	if status == hang {
		<-r.Context().Done() // the client's per-call timeout or deadline
		return
	}
	if t, ok := errorTypes[status]; ok {
		w.Header().Set("x-amzn-ErrorType", t)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"message":null}`)
		return
	}
	w.WriteHeader(status)
}

// close answers DELETE @connections/{id} by closeScript, as ServeHTTP
// answers posts, and records it.
func (a *mgmtAPI) close(w http.ResponseWriter, id string) {
	a.mu.Lock()
	a.closes = append(a.closes, id)
	attempt := 0
	for _, c := range a.closes {
		if c == id {
			attempt++
		}
	}
	a.mu.Unlock()
	status := http.StatusNoContent
	if s := a.closeScript[id]; len(s) > 0 {
		status = s[min(attempt, len(s))-1]
	}
	if t, ok := errorTypes[status]; ok {
		w.Header().Set("x-amzn-ErrorType", t)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"message":null}`)
		return
	}
	w.WriteHeader(status)
}

// closed is every DELETE @connections/{id} received, in order.
func (a *mgmtAPI) closed() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.closes)
}

// attempts is how many posts each connection got.
func (a *mgmtAPI) attempts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := map[string]int{}
	for id, b := range a.bodies {
		n[id] = len(b)
	}
	return n
}

func (a *mgmtAPI) posts() int {
	total := 0
	for _, n := range a.attempts() {
		total += n
	}
	return total
}

func (a *mgmtAPI) received() map[string][][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string][][]byte, len(a.bodies))
	for id, b := range a.bodies {
		out[id] = slices.Clone(b)
	}
	return out
}

// newPoster starts api and returns the real management API client for it.
func newPoster(t testing.TB, api http.Handler) *apigw.Client {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	}
	return apigw.New(cfg, srv.URL)
}

var publishTime = time.Date(2025, 3, 1, 11, 0, 0, 0, time.FixedZone("CET", 3600))

// testOptions are fast, deterministic options: short backoffs, a fixed id
// and clock, no log output.
func testOptions() fanout.Options {
	return fanout.Options{
		MaxAttempts: 3,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		CallTimeout: 5 * time.Second,
		Logger:      slog.New(slog.DiscardHandler),
		Now:         func() time.Time { return publishTime },
		NewID:       func() string { return "msg-1" },
	}
}

// countingPoster counts posts and always succeeds.
type countingPoster struct{ n atomic.Int32 }

func (p *countingPoster) PostToConnection(context.Context, string, []byte) error {
	p.n.Add(1)
	return nil
}

var errBoom = errors.New("boom")
