package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// patternStores are the two real stores a pattern publish is read from:
// the memory store and DynamoDB (dynalite), each fresh per call.
func patternStores(t *testing.T) map[string]func(t *testing.T) store.Store {
	t.Helper()
	client := store.NewDynamoDBClient(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, dynalite.Start(t).Endpoint())
	var tables atomic.Int64
	return map[string]func(t *testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return store.NewMemory() },
		"dynamodb": func(t *testing.T) store.Store {
			name := fmt.Sprintf("patterns-%d", tables.Add(1))
			if err := store.EnsureTable(t.Context(), client, name); err != nil {
				t.Fatal(err)
			}
			return store.NewDynamoDB(client, name)
		},
	}
}

// countingStore counts the subscriber lists read, per topic or pattern, and
// can fail the reads of one of them from its n-th on.
type countingStore struct {
	store.Store
	mu       sync.Mutex
	reads    map[string]int
	failName string
	failFrom int
}

func (c *countingStore) Subscribers(ctx context.Context, topic string, limit int, token string) (store.Page, error) {
	c.mu.Lock()
	if c.reads == nil {
		c.reads = map[string]int{}
	}
	c.reads[topic]++
	fail := topic == c.failName && c.reads[topic] >= c.failFrom
	c.mu.Unlock()
	if fail {
		return store.Page{}, fmt.Errorf("%w: scripted", store.ErrUnavailable)
	}
	return c.Store.Subscribers(ctx, topic, limit, token)
}

func (c *countingStore) readsOf() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.reads)
}

func subscribe(t *testing.T, s store.Store, id string, names ...string) {
	t.Helper()
	if err := s.PutConnection(t.Context(), store.Connection{ID: id}); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(t.Context(), id, "", names); err != nil {
		t.Fatal(err)
	}
}

// framesOf decodes what each connection received.
func framesOf(t *testing.T, api *mgmtAPI) map[string][]wsproto.Message {
	t.Helper()
	out := map[string][]wsproto.Message{}
	for id, bodies := range api.received() {
		for _, b := range bodies {
			var m wsproto.Message
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("frame to %s: %v", id, err)
			}
			out[id] = append(out[id], m)
		}
	}
	return out
}

// A connection holding the topic and patterns that match it gets one frame
// per publish, counted once; a pattern reaches only the topics below it.
// Small pages make the lists' pages interleave, so that a connection in
// several lists meets itself across pages.
func TestPublishToPatternSubscribers(t *testing.T) {
	t.Parallel()
	for name, newStore := range patternStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := &countingStore{Store: newStore(t)}
			subscribe(t, s, "all", "a.b.c", "a.*", "*")
			subscribe(t, s, "ab", "a.b.*")
			subscribe(t, s, "a", "a.*")
			subscribe(t, s, "exact", "a.b.c")
			subscribe(t, s, "other", "x.*", "a.b")
			// Many more, each with a random mix, so that the merge meets
			// every overlap across page boundaries.
			want := map[string]map[string]bool{ // topic → who must get it
				"a.b.c": {"all": true, "ab": true, "a": true, "exact": true},
				"a.c":   {"all": true, "a": true},
			}
			choices := []string{"a.b.c", "a.b.*", "a.*", "*", "a.c", "b.*"}
			for i := range 40 {
				id := fmt.Sprintf("m%02d", i)
				var names []string
				for _, c := range choices {
					if rand.N(2) == 0 {
						names = append(names, c)
					}
				}
				if len(names) == 0 {
					names = []string{"b.*"}
				}
				subscribe(t, s, id, names...)
				for topic, who := range want {
					for _, n := range names {
						if n == topic || wsproto.Matches(n, topic) {
							who[id] = true
						}
					}
				}
			}

			for _, topic := range []string{"a.b.c", "a.c"} {
				api := &mgmtAPI{}
				opts := testOptions()
				opts.PageSize = 3
				f := fanout.New(s, newPoster(t, api), opts)
				before := s.readsOf()
				res, err := f.Publish(t.Context(), fanout.Message{Topic: topic, Data: json.RawMessage(`1`)})
				if err != nil {
					t.Fatal(err)
				}
				got := framesOf(t, api)
				for id, frames := range got {
					if !want[topic][id] {
						t.Errorf("publish to %s reached %s, which holds nothing that matches it", topic, id)
					}
					if len(frames) != 1 {
						t.Errorf("publish to %s: %s got %d frames, want 1", topic, id, len(frames))
					}
					if frames[0].Topic != topic {
						t.Errorf("publish to %s: %s's frame names topic %q", topic, id, frames[0].Topic)
					}
				}
				if len(got) != len(want[topic]) || res.Delivered != len(want[topic]) || res.Failed != 0 || res.Gone != 0 {
					t.Errorf("publish to %s reached %d, result %+v; want %d delivered", topic, len(got), res, len(want[topic]))
				}
				// One paginated lookup per level: the topic and each
				// pattern that matches it, nothing else.
				lists := []string{topic}
				lists = append(lists, wsproto.MatchingPatterns(topic)...)
				after := s.readsOf()
				for name, n := range after {
					if n != before[name] && !slices.Contains(lists, name) {
						t.Errorf("publish to %s read the subscribers of %q", topic, name)
					}
				}
				if len(lists) != strings.Count(topic, ".")+2 {
					t.Errorf("publish to %s looks up %q, want depth+1 lists", topic, lists)
				}
			}
		})
	}
}

// A lookup of a pattern that fails fails the publish like the topic's own
// would: on the first pages, before anything is posted; on a later page,
// after, with what was posted counted and nobody posted twice.
func TestPublishWhenAPatternLookupFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		failFrom   int
		wantPosted bool
	}{
		{"first page", 1, false},
		{"later page", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &countingStore{Store: store.NewMemory(), failName: "a.*", failFrom: tc.failFrom}
			for i := range 10 {
				subscribe(t, s, fmt.Sprintf("c%02d", i), "a.b", "a.*", "*")
			}
			api := &mgmtAPI{}
			opts := testOptions()
			opts.PageSize = 4
			res, err := fanout.New(s, newPoster(t, api), opts).Publish(t.Context(), fanout.Message{Topic: "a.b", Data: json.RawMessage(`1`)})
			if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), `"a.*"`) {
				t.Fatalf("Publish = %v, want ErrUnavailable naming the pattern", err)
			}
			if posted := api.posts(); (posted > 0) != tc.wantPosted || posted != res.Delivered {
				t.Errorf("posted %d, result %+v; want posts=%v, each counted", posted, res, tc.wantPosted)
			}
			for id, n := range api.attempts() {
				if n != 1 {
					t.Errorf("%s got %d posts", id, n)
				}
			}
		})
	}
}

// A gone connection holding several matching patterns is posted once,
// counted Gone once, and forgotten with all its subscriptions.
func TestGoneConnectionWithPatterns(t *testing.T) {
	t.Parallel()
	s := store.NewMemory()
	subscribe(t, s, "gone", "a.b", "a.*", "*")
	subscribe(t, s, "live", "a.*")
	api := &mgmtAPI{script: map[string][]int{"gone": {410}}}
	res, err := fanout.New(s, newPoster(t, api), testOptions()).Publish(t.Context(), fanout.Message{Topic: "a.b", Data: json.RawMessage(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != 1 || res.Gone != 1 || api.attempts()["gone"] != 1 {
		t.Errorf("result %+v, %d posts to gone; want 1 delivered, 1 gone, 1 post", res, api.attempts()["gone"])
	}
	for _, name := range []string{"a.b", "a.*", "*"} {
		p, err := s.Subscribers(t.Context(), name, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range p.Subscriptions {
			if sub.ConnectionID == "gone" {
				t.Errorf("%s still lists the gone connection", name)
			}
		}
	}
}

// Many publishes while connections subscribe to and drop patterns: no
// connection ever gets one message twice, and those that held their
// subscriptions throughout get every message.
func TestConcurrentPublishesAndPatternChurn(t *testing.T) {
	t.Parallel()
	for name, newStore := range patternStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			var steady []string
			for i := range 8 {
				id := fmt.Sprintf("s%02d", i)
				steady = append(steady, id)
				subscribe(t, s, id, "a.b.c", "a.*", "*")
			}
			var churners []string
			for i := range 12 {
				id := fmt.Sprintf("c%02d", i)
				churners = append(churners, id)
				subscribe(t, s, id, "a.b.c")
			}
			api := &mgmtAPI{}
			opts := testOptions()
			opts.PageSize = 5
			var ids atomic.Int64
			opts.NewID = func() string { return fmt.Sprint("m", ids.Add(1)) }
			f := fanout.New(s, newPoster(t, api), opts)

			ctx, stop := context.WithCancel(t.Context())
			var churn sync.WaitGroup
			for _, id := range churners {
				churn.Go(func() {
					names := []string{"a.*", "*", "a.b.*"}
					for ctx.Err() == nil {
						n := names[rand.N(len(names))]
						if err := s.Subscribe(ctx, id, "", []string{n}); err != nil && ctx.Err() == nil {
							t.Error(err)
						}
						if err := s.Unsubscribe(ctx, id, []string{n}); err != nil && ctx.Err() == nil {
							t.Error(err)
						}
					}
				})
			}
			const publishes = 30
			var pubs sync.WaitGroup
			results := make([]fanout.Result, publishes)
			for i := range publishes {
				pubs.Go(func() {
					res, err := f.Publish(t.Context(), fanout.Message{Topic: "a.b.c", Data: json.RawMessage(`1`)})
					if err != nil {
						t.Error(err)
					}
					results[i] = res
				})
			}
			pubs.Wait()
			stop()
			churn.Wait()

			got := framesOf(t, api)
			delivered := 0
			for _, r := range results {
				delivered += r.Delivered
			}
			total := 0
			for id, frames := range got {
				seen := map[string]bool{}
				for _, m := range frames {
					if seen[m.ID] {
						t.Errorf("%s got message %s twice", id, m.ID)
					}
					seen[m.ID] = true
				}
				total += len(frames)
			}
			if total != delivered {
				t.Errorf("%d frames posted, results count %d delivered", total, delivered)
			}
			for _, id := range steady {
				if len(got[id]) != publishes {
					t.Errorf("%s, subscribed throughout, got %d of %d messages", id, len(got[id]), publishes)
				}
			}
			for _, id := range churners {
				if len(got[id]) != publishes {
					t.Errorf("%s, on a.b.c throughout, got %d of %d messages", id, len(got[id]), publishes)
				}
			}
		})
	}
}
