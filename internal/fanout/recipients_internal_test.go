package fanout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listSource serves ids (ascending) in pages of the limit asked for, as a
// store lists a partition, and records the largest page it handed out.
func listSource(name string, ids []string, reads *int) source {
	return source{name: name, read: func(_ context.Context, limit int, token string) (page, error) {
		*reads++
		start := 0
		if token != "" {
			start, _ = strconv.Atoi(token)
		}
		end := min(start+limit, len(ids))
		p := page{ids: slices.Clone(ids[start:end])}
		if end < len(ids) {
			p.next = strconv.Itoa(end)
		}
		return p, nil
	}}
}

// The merge of random overlapping lists is their union, ascending, each id
// once, in pages no larger than asked, holding no more than a page per
// list, and it reads each list's pages once.
func TestMergedIsTheUnionOnce(t *testing.T) {
	t.Parallel()
	for round := range 200 {
		lists := rand.N(5) + 1
		limit := rand.N(6) + 1
		union := map[string]bool{}
		var sources []source
		reads := make([]int, lists)
		wantReads := 0
		for l := range lists {
			var ids []string
			for i := range 30 {
				if rand.N(3) == 0 {
					id := fmt.Sprintf("c%03d", i)
					ids = append(ids, id)
					union[id] = true
				}
			}
			sources = append(sources, listSource(fmt.Sprint("l", l), ids, &reads[l]))
			wantReads += max(1, (len(ids)+limit-1)/limit)
		}
		m := newMerged(sources)
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			p, err := m.read(t.Context(), limit, token)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.ids) > limit {
				t.Fatalf("round %d: a page of %d, limit %d", round, len(p.ids), limit)
			}
			for _, s := range m.sources {
				if len(s.buf) > limit {
					t.Fatalf("round %d: a list holds %d ids, over a page", round, len(s.buf))
				}
			}
			got = append(got, p.ids...)
			if p.next == "" {
				break
			}
			if pages > 1000 {
				t.Fatal("no last page")
			}
			token = p.next
		}
		want := slices.Sorted(func(yield func(string) bool) {
			for id := range union {
				if !yield(id) {
					return
				}
			}
		})
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: merged %q, want %q", round, got, want)
		}
		total := 0
		for _, r := range reads {
			total += r
		}
		if total != wantReads {
			t.Fatalf("round %d: %d reads, want %d (each page of each list once)", round, total, wantReads)
		}
	}
}

// A list out of order would let a connection through twice: the merge
// refuses it instead of delivering on.
func TestMergedRefusesAListOutOfOrder(t *testing.T) {
	t.Parallel()
	var okReads, badReads int // each list's own: they are read concurrently
	m := newMerged([]source{
		listSource("ok", []string{"a", "b", "c"}, &okReads),
		listSource("bad", []string{"a", "c", "b"}, &badReads),
	})
	var err error
	for token := ""; err == nil; {
		var p page
		p, err = m.read(t.Context(), 2, token)
		if p.next == "" && err == nil {
			t.Fatal("merged an out-of-order list to its end")
		}
		token = p.next
	}
	if !strings.Contains(err.Error(), "out of order") || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("error %v, want it to name the list out of order", err)
	}
}

// A merge reads the lists it needs side by side, at most
// maxConcurrentReads at once, and every read runs to its end even when
// another fails: the error returned is the first in the lists' order, not
// the first to happen.
func TestMergedReadsSideBySideWithinTheBound(t *testing.T) {
	t.Parallel()
	const lists = 3 * maxConcurrentReads
	var inflight, most atomic.Int32
	var done, cancelled atomic.Int32
	var sources []source
	for l := range lists {
		sources = append(sources, source{name: fmt.Sprint("l", l), read: func(ctx context.Context, _ int, _ string) (page, error) {
			n := inflight.Add(1)
			defer inflight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			// Hold the read a while, or until more than the bound are in
			// flight, so that a merge that can go wider is seen to.
			for deadline := time.Now().Add(100 * time.Millisecond); inflight.Load() <= maxConcurrentReads && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			defer done.Add(1)
			if ctx.Err() != nil {
				cancelled.Add(1)
			}
			switch l {
			case 1:
				time.Sleep(20 * time.Millisecond) // fails last of the two
				return page{}, errors.New("l1 failed")
			case lists - 1:
				return page{}, errors.New("the last list failed")
			}
			return page{ids: []string{fmt.Sprintf("c%03d", l)}}, nil
		}})
	}
	_, err := newMerged(sources).read(t.Context(), 10, "")
	if err == nil || !strings.Contains(err.Error(), "l1 failed") {
		t.Errorf("read = %v, want the error of l1, the first failing list in order", err)
	}
	if got := done.Load(); got != lists {
		t.Errorf("%d of %d reads ran to their end, want all", got, lists)
	}
	if got := cancelled.Load(); got != 0 {
		t.Errorf("%d reads saw their context cancelled by another's failure, want none", got)
	}
	if got := most.Load(); got != maxConcurrentReads {
		t.Errorf("at most %d reads at once, want exactly the bound, %d", got, maxConcurrentReads)
	}
}
