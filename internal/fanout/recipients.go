package fanout

import (
	"context"
	"fmt"
)

// recipients is whom one delivery goes to, read a page of connection ids at
// a time: a topic's subscribers, a user's connections, one connection. The
// fan-out's one delivery path (run, deliver, the flow, 410 cleanup,
// retries, metrics) knows nothing else about them.
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

// subscribersOf is every live subscriber of topic.
func (f *Fanout) subscribersOf(topic string) recipients {
	return recipients{
		what: fmt.Sprintf("subscribers of topic %q", topic),
		read: func(ctx context.Context, limit int, token string) (page, error) {
			p, err := f.subs.Subscribers(ctx, topic, limit, token)
			if err != nil {
				return page{}, err
			}
			ids := make([]string, len(p.Subscriptions))
			for i, s := range p.Subscriptions {
				ids[i] = s.ConnectionID
			}
			return page{ids: ids, next: p.NextToken}, nil
		},
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
