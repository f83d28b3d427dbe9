package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// A user is a connect token's "sub": every connection opened with a token
// of that subject is one of the user's connections (store.UserConnections).

// Limits of the user calls.
const (
	// MaxUserIDBytes is store.MaxUserIDLen: one rule for $connect, the
	// stores and the API.
	MaxUserIDBytes = store.MaxUserIDLen
	// MaxReasonBytes bounds a disconnect's reason: a line for the page to
	// show or log, not a payload.
	MaxReasonBytes = 256
	// MaxConnectionIDBytes bounds a connection id given to Disconnect.
	// API Gateway's are 16 characters; the bound only keeps garbage out
	// of store keys and logs.
	MaxConnectionIDBytes = 128
)

// ErrNotClosed: Disconnect could not close some connection (the management
// API kept failing after retries); they are still open. Disconnect is safe
// to call again.
var ErrNotClosed = errors.New("connections could not be closed")

// userKeyScope is where a user's idempotency keys are reserved: a name no
// topic can have (topics cannot hold '@' or '/'), so a key used for a user
// and for a topic are two keys.
func userKeyScope(userID string) string { return "@user/" + userID }

// UserMessage is what a backend sends to one user.
type UserMessage struct {
	UserID     string
	Data       json.RawMessage // any JSON value; required
	Attributes map[string]string
	// IdempotencyKey, as Message's: a repeat of the same send to the same
	// user within store.IdempotencyWindow delivers nothing again.
	IdempotencyKey string
}

// checkUserID is store.ValidateUserID, as an ErrInvalid.
func checkUserID(userID string) error {
	if err := store.ValidateUserID(userID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// SendToUser posts m to every open connection of its user, in a message
// frame that names the user instead of a topic and carries no position:
// a user's messages are no stream, and none is retained. Everything else is
// Publish's: the same validation, idempotency, delivery, retries, 410
// cleanup, flow and metrics; its Result and errors mean the same, and its
// Position is always zero. A user with no connection gets nothing, and
// that is no error (Delivered 0).
func (f *Fanout) SendToUser(ctx context.Context, m UserMessage) (res Result, err error) {
	start := time.Now()
	defer func() { f.opts.Observer.PublishDone(res, err, time.Since(start)) }()
	if err := checkUserID(m.UserID); err != nil {
		return Result{}, err
	}
	if err := checkContent(m.Data, m.Attributes, m.IdempotencyKey); err != nil {
		return Result{}, err
	}
	return f.send(ctx, sending{
		frame:    wsproto.Message{User: m.UserID, Data: m.Data, Attributes: m.Attributes},
		keyScope: userKeyScope(m.UserID),
		key:      m.IdempotencyKey,
		to:       f.connectionsOf(m.UserID),
		log:      f.opts.Logger.With("user_id", m.UserID),
	})
}

// Disconnect says which connections to close and what to tell them: either
// one connection or every connection of one user.
type Disconnect struct {
	ConnectionID string
	UserID       string
	// Reason (at most MaxReasonBytes of UTF-8) and Reconnect go to each
	// connection in its disconnect frame.
	Reason    string
	Reconnect bool
}

func (d Disconnect) validate() error {
	switch {
	case d.ConnectionID == "" && d.UserID == "":
		return fmt.Errorf("%w: give a connection id or a user id", ErrInvalid)
	case d.ConnectionID != "" && d.UserID != "":
		return fmt.Errorf("%w: give a connection id or a user id, not both", ErrInvalid)
	case len(d.Reason) > MaxReasonBytes:
		return fmt.Errorf("%w: reason is %d bytes, at most %d allowed", ErrInvalid, len(d.Reason), MaxReasonBytes)
	case !utf8.ValidString(d.Reason):
		return fmt.Errorf("%w: reason is not valid UTF-8", ErrInvalid)
	case d.UserID != "":
		return checkUserID(d.UserID)
	case len(d.ConnectionID) > MaxConnectionIDBytes:
		return fmt.Errorf("%w: connection id is %d bytes, at most %d allowed", ErrInvalid, len(d.ConnectionID), MaxConnectionIDBytes)
	}
	for i := range len(d.ConnectionID) {
		if c := d.ConnectionID[i]; c <= 0x20 || c > 0x7e || c == '/' {
			return fmt.Errorf("%w: connection id has byte %#02x at %d: only printable ASCII without spaces or '/' is allowed", ErrInvalid, c, i)
		}
	}
	return nil
}

// Disconnect tells each connection it names why it is being closed (a
// disconnect frame), closes it through the management API, and forgets it
// with its subscriptions. It returns how many connections it closed.
//
// A connection the store does not know (or no longer does) counts 0, as
// does a user with no connection: there is nothing to close. A connection
// that turns out gone (410) is forgotten and not counted. The frame is best
// effort: a connection whose post fails is closed all the same. The posts
// and closes of a user's many connections run like a publish's posts: a
// bounded pool, paced by the one flow, retried the same way.
//
// Disconnect returns ErrInvalid for a bad request (nothing posted or
// closed), a store error when the connections could not be read, and
// ErrNotClosed, with the count of those it did close, when some could not
// be closed; calling it again closes the rest.
func (f *Fanout) Disconnect(ctx context.Context, d Disconnect) (int, error) {
	if err := d.validate(); err != nil {
		return 0, err
	}
	if f.opts.Closer == nil {
		return 0, errors.New("fanout: Disconnect needs Options.Closer")
	}
	to, log := f.connectionsOf(d.UserID), f.opts.Logger.With("user_id", d.UserID)
	if d.ConnectionID != "" {
		// Looked up, not closed blindly: the management API's answer to an
		// id it never issued is not 410 on every stage, and an id the store
		// does not know is not ours to close.
		if _, err := f.subs.GetConnection(ctx, d.ConnectionID); errors.Is(err, store.ErrNotFound) {
			return 0, nil
		} else if err != nil {
			return 0, fmt.Errorf("read connection %q: %w", d.ConnectionID, storeCause(ctx, err))
		}
		to = only(fmt.Sprintf("connection %q", d.ConnectionID), d.ConnectionID)
		log = f.opts.Logger.With("connection_id", d.ConnectionID)
	}
	first, err := f.lookup(ctx, to, "")
	if err != nil {
		return 0, lookupError(ctx, to, err)
	}
	del := &delivery{Fanout: f, envelope: wsproto.DisconnectFrame(d.Reason, d.Reconnect), log: log}
	res, err := del.run(ctx, to, first, del.disconnect)
	if err != nil {
		return res.Delivered, err
	}
	if res.Failed > 0 {
		return res.Delivered, fmt.Errorf("%w: %d of %s", ErrNotClosed, res.Failed, to)
	}
	return res.Delivered, nil
}

// disconnect posts the disconnect frame to one connection, then closes it
// and forgets it. Delivered counts a connection closed.
func (d *delivery) disconnect(ctx context.Context, connID string) outcome {
	if err := d.call(ctx, connID, "post the disconnect frame", d.post); errors.Is(err, apigw.ErrGone) {
		d.forget(ctx, connID)
		return gone
	}
	// Posted or not, it is closed: the frame is a courtesy, the close is
	// what was asked for.
	switch err := d.call(ctx, connID, "close", d.opts.Closer.DeleteConnection); {
	case err == nil:
		// API Gateway sends $disconnect for a connection it closes, which
		// forgets it too; forgetting it here does not wait for that, nor
		// depend on it (AWS only promises its best effort).
		d.forget(ctx, connID)
		return delivered
	case errors.Is(err, apigw.ErrGone):
		d.forget(ctx, connID)
		return gone
	}
	// Still open: kept in the store, so that a retry finds it.
	return failed
}
