package fanout

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// recipients is whom one delivery goes to, read a page of connection ids at
// a time: a topic's subscribers, a user's connections, one connection. The
// fan-out's one delivery path (run, deliver, the flow, 410 cleanup,
// retries, metrics) knows nothing else about them. A recipients value
// serves one delivery: its page tokens may stand for state it keeps (see
// merged).
type recipients struct {
	// what names them in errors and logs ("subscribers of topic \"news\"").
	what string
	read func(ctx context.Context, limit int, pageToken string) (page, error)
}

func (r recipients) String() string { return r.what }

// page is one page of recipients; next is empty on the last one.
type page struct {
	ids  []string
	next string
}

// subscribersOf is every live subscriber of topic: those of the topic
// itself and those of each pattern that matches it ("a.b.c": "a.b.*",
// "a.*", "*"), each connection once however many of them it holds. That
// is one paginated lookup per level of the topic, depth+1 in all, merged
// as they are read (merged).
func (f *Fanout) subscribersOf(topic string) recipients {
	names := append([]string{topic}, wsproto.MatchingPatterns(topic)...)
	sources := make([]source, len(names))
	for i, name := range names {
		sources[i] = source{name: name, read: f.subscriberPage(name)}
	}
	return recipients{
		what: fmt.Sprintf("subscribers of topic %q", topic),
		read: newMerged(sources).read,
	}
}

// subscriberPage reads one page of the subscriptions to name, a topic or a
// pattern.
func (f *Fanout) subscriberPage(name string) func(ctx context.Context, limit int, token string) (page, error) {
	return func(ctx context.Context, limit int, token string) (page, error) {
		p, err := f.subs.Subscribers(ctx, name, limit, token)
		if err != nil {
			return page{}, err
		}
		ids := make([]string, len(p.Subscriptions))
		for i, s := range p.Subscriptions {
			ids[i] = s.ConnectionID
		}
		return page{ids: ids, next: p.NextToken}, nil
	}
}

// connectionsOf is every live connection of a user.
func (f *Fanout) connectionsOf(userID string) recipients {
	return recipients{
		what: fmt.Sprintf("connections of user %q", userID),
		read: func(ctx context.Context, limit int, token string) (page, error) {
			p, err := f.subs.UserConnections(ctx, userID, limit, token)
			if err != nil {
				return page{}, err
			}
			return page{ids: p.ConnectionIDs, next: p.NextToken}, nil
		},
	}
}

// only is the given connection ids, in one page.
func only(what string, ids ...string) recipients {
	return recipients{
		what: what,
		read: func(context.Context, int, string) (page, error) { return page{ids: ids}, nil },
	}
}

// source is one paginated list of connection ids in ascending order: the
// stores list a topic's (or a pattern's) subscribers ordered by connection
// id, one Query per page.
type source struct {
	name string
	read func(ctx context.Context, limit int, token string) (page, error)

	buf     []string // read but not yet merged, ascending
	next    string   // token of the page after buf; "" when buf is the last
	started bool     // the first page was read
	last    string   // the last id read, to check the order
}

// pending reports whether the source holds or can read more ids.
func (s *source) pending() bool { return len(s.buf) > 0 || !s.started || s.next != "" }

// mustRead reports whether the source has to read a page before the merge
// may pick its next id: its next id may be the smallest of all.
func (s *source) mustRead() bool { return len(s.buf) == 0 && (!s.started || s.next != "") }

// fill reads the source's next page and checks that it continues the
// ascending order the merge relies on: out of order, a connection could
// get the message twice.
func (s *source) fill(ctx context.Context, limit int) error {
	for {
		p, err := s.read(ctx, limit, s.next)
		if err != nil {
			return fmt.Errorf("%q: %w", s.name, err)
		}
		for _, id := range p.ids {
			if s.last != "" && id <= s.last {
				return fmt.Errorf("%q: the store listed connection %q after %q, out of order", s.name, id, s.last)
			}
			s.last = id
		}
		s.buf, s.next, s.started = p.ids, p.next, true
		// A page may come back empty with more after it (DynamoDB's
		// filtered Query does): read on until ids or the end.
		if len(s.buf) > 0 || s.next == "" {
			return nil
		}
	}
}

// merged is the union of sources, each connection once: a k-way merge of
// lists that are each in ascending order, so a connection in several of
// them comes up at the head of each at the same moment and is taken once.
// It holds at most one page per source (depth+1 pages for a topic), however
// many subscribers there are: no set of ids already sent, which would grow
// with the audience.
//
// Its pages carry a token that only says "more": the cursors live here,
// so a merged is read once, in order, by one delivery.
type merged struct {
	sources []*source
}

// moreToken is the next page token of a merged that has more.
const moreToken = "more"

// maxConcurrentReads bounds the store reads one merge makes at once: a
// topic of many levels reads as many first pages.
const maxConcurrentReads = 8

func newMerged(sources []source) *merged {
	m := &merged{}
	for i := range sources {
		m.sources = append(m.sources, &sources[i])
	}
	return m
}

func (m *merged) read(ctx context.Context, limit int, _ string) (page, error) {
	var out []string
	for len(out) < limit {
		if err := m.fill(ctx, limit); err != nil {
			return page{}, err
		}
		lowest := ""
		found := false
		for _, s := range m.sources {
			if len(s.buf) > 0 && (!found || s.buf[0] < lowest) {
				lowest, found = s.buf[0], true
			}
		}
		if !found {
			break // every source is read to its end
		}
		for _, s := range m.sources {
			if len(s.buf) > 0 && s.buf[0] == lowest {
				s.buf = s.buf[1:]
			}
		}
		out = append(out, lowest)
	}
	p := page{ids: out}
	for _, s := range m.sources {
		if s.pending() {
			p.next = moreToken
			break
		}
	}
	return p, nil
}

// fill reads a page of every source that needs one before the merge can go
// on, concurrently (bounded by maxConcurrentReads). Every read runs to its
// end even when another fails, so that a publish makes the same reads
// whatever fails; the first error, in sources' order, is returned.
func (m *merged) fill(ctx context.Context, limit int) error {
	var due []*source
	for _, s := range m.sources {
		if s.mustRead() {
			due = append(due, s)
		}
	}
	switch len(due) {
	case 0:
		return nil
	case 1:
		return due[0].fill(ctx, limit)
	}
	errs := make([]error, len(due))
	var g errgroup.Group
	g.SetLimit(maxConcurrentReads)
	for i, s := range due {
		g.Go(func() error {
			errs[i] = s.fill(ctx, limit)
			return nil // kept in errs, to return the first in sources' order
		})
	}
	g.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
