package fanout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
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
