// Package fanout delivers one published message to every subscriber of a
// topic through the API Gateway management API. It is the one transport-free
// executor behind the publisher service's gRPC and REST APIs and the publish
// Lambda.
package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	smithytime "github.com/aws/smithy-go/time"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// ErrInvalid marks a message the caller must fix (bad topic, no data,
// envelope over 128 KB, malformed idempotency key). Errors wrap it with the
// detail.
var ErrInvalid = errors.New("invalid message")

// Limits a message must stay within. The envelope limit is API Gateway's;
// the attribute limits are ours, to keep attributes the small routing
// metadata they are meant to be rather than a second payload.
const (
	MaxEnvelopeBytes       = 131072
	MaxAttributes          = 64
	MaxAttributeKeyBytes   = 128
	MaxAttributeValueBytes = 1024
	// MaxIdempotencyKeyBytes bounds an idempotency key, which is stored
	// with every keyed publish for store.IdempotencyWindow.
	MaxIdempotencyKeyBytes = 128
)

// Message is what a backend publishes.
type Message struct {
	Topic      string
	Data       json.RawMessage // any JSON value; required
	Attributes map[string]string
	// IdempotencyKey, when not empty (1–128 printable ASCII characters),
	// makes a retry of the same publish within store.IdempotencyWindow
	// answer the first one's outcome instead of delivering it again.
	IdempotencyKey string
}

// Result counts how the deliveries of one publish ended.
type Result struct {
	MessageID string
	// Position is the message's place in its topic's stream; zero when
	// the Fanout has no Options.Streams.
	Position  store.Position
	Delivered int
	Gone      int
	Failed    int
	// Duplicate: the idempotency key was an earlier accepted publish's.
	// MessageID and Position are that publish's; nothing was delivered.
	Duplicate bool
}

// Store is what the fan-out reads recipients from (a topic's subscribers,
// a user's connections) and forgets closed and gone connections in;
// store.Store satisfies it.
type Store interface {
	Subscribers(ctx context.Context, topic string, limit int, pageToken string) (store.Page, error)
	UserConnections(ctx context.Context, userID string, limit int, pageToken string) (store.ConnectionPage, error)
	GetConnection(ctx context.Context, connectionID string) (store.Connection, error)
	DeleteConnection(ctx context.Context, connectionID string) error
}

// Poster posts one message to one connection; *apigw.Client satisfies it.
// The fan-out branches on apigw's sentinel errors.
type Poster interface {
	PostToConnection(ctx context.Context, connectionID string, data []byte) error
}

// Closer closes one connection (DELETE @connections/{id}); *apigw.Client
// satisfies it. A connection already gone answers apigw.ErrGone.
type Closer interface {
	DeleteConnection(ctx context.Context, connectionID string) error
}

// Defaults for the zero Options fields.
const (
	// DefaultConcurrency hides up to 100 ms of call time at AWS's default
	// quota of 10 000 calls/s.
	DefaultConcurrency = 1024
	DefaultPageSize    = 1000
	// DefaultMaxAttempts: at the quota the flow keeps about 1% of posts
	// throttled, so five 429s in a row are a one-in-ten-billion event.
	DefaultMaxAttempts = 5
	DefaultBaseBackoff = 50 * time.Millisecond
	DefaultMaxBackoff  = time.Second
	DefaultCallTimeout = 5 * time.Second
	// DefaultBroadcastConcurrency: enough topics at once that their store
	// calls (position, retention, first page) overlap each other's posts.
	DefaultBroadcastConcurrency = 16
)

// Options tune a Fanout. Zero (or negative) fields take the defaults above.
type Options struct {
	// Concurrency caps the posts of one publish in flight at once. Below
	// it, the fan-out keeps as many in flight as hide the management API's
	// latency, and paces them to the account's quota when it throttles
	// (flow.go). Keep it at or below apigw.MaxIdleConnsPerHost so posts
	// reuse connections.
	Concurrency int
	// PageSize is how many subscribers are read per store page.
	PageSize int
	// MaxAttempts bounds the posts to one connection, first try included;
	// a 429 the flow has answered with a slower pace does not count.
	MaxAttempts int
	// Retries wait a random time in [0, min(MaxBackoff, BaseBackoff·2^n)).
	BaseBackoff, MaxBackoff time.Duration
	// CallTimeout bounds each post and each cleanup of a gone connection.
	CallTimeout time.Duration
	Logger      *slog.Logger     // default slog.Default()
	Now         func() time.Time // default time.Now; the envelope's publishTime
	NewID       func() string    // default a random UUIDv4; the message id
	Observer    Observer         // default one that ignores everything
	// Streams gives every message its topic position, retains it for
	// HistoryTTL and remembers idempotency keys. Without it (tests of the
	// delivery alone) messages carry no position, and a message with an
	// idempotency key is refused, since no key could be remembered.
	Streams store.Streams
	// HistoryTTL is how long a message is retained for recovery and
	// History. Unlike the fields above, zero is not a default: it keeps
	// nothing (positions are still assigned).
	HistoryTTL time.Duration
	// Closer closes connections for Disconnect, which fails without it.
	Closer Closer
	// BroadcastConcurrency caps the topics of one Broadcast published at
	// once (default DefaultBroadcastConcurrency). Their posts share the
	// one flow whatever it is, so it bounds the goroutines and store
	// calls of a broadcast, not its pace.
	BroadcastConcurrency int
}

// Observer is told how publishes go, for metrics (internal/metrics
// implements it). Its methods run on the publish path, from many goroutines
// at once: they must be cheap and safe for concurrent use.
type Observer interface {
	// PublishDone reports every Publish call: what it returned and how long
	// it took.
	PublishDone(res Result, err error, d time.Duration)
	// LookupDone reports one read of a page of recipients: of a topic's
	// subscribers (those of the patterns it matches included) or of a
	// user's connections.
	LookupDone(d time.Duration)
	// Retry reports a post about to be tried again.
	Retry()
}

type nopObserver struct{}

func (nopObserver) PublishDone(Result, error, time.Duration) {}
func (nopObserver) LookupDone(time.Duration)                 {}
func (nopObserver) Retry()                                   {}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = DefaultBaseBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewID == nil {
		o.NewID = newID
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.BroadcastConcurrency <= 0 {
		o.BroadcastConcurrency = DefaultBroadcastConcurrency
	}
	return o
}

// Fanout delivers messages to a topic's subscribers or a user's
// connections, and disconnects connections. It is safe for concurrent use;
// each call runs its own bounded pool of workers, and all of them share
// one flow: what the management API was seen to absorb, since every call
// spends the same account's quota.
type Fanout struct {
	subs   Store
	poster Poster
	opts   Options
	flow   *flow
}

// New returns a Fanout that reads recipients from subs and posts with
// poster. Disconnect also needs Options.Closer.
func New(subs Store, poster Poster, opts Options) *Fanout {
	opts = opts.withDefaults()
	return &Fanout{subs: subs, poster: poster, opts: opts, flow: newFlow(opts.Concurrency)}
}

// validate reports what is wrong with m, if anything, wrapping ErrInvalid,
// before Publish reads or posts anything. It cannot see the envelope
// limit, which depends on the encoded envelope.
func validate(m Message) error {
	if err := wsproto.ValidateTopic(m.Topic); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return checkContent(m.Data, m.Attributes, m.IdempotencyKey)
}

// checkContent is validate for what every kind of message carries: its
// data, attributes and idempotency key.
func checkContent(data json.RawMessage, attributes map[string]string, key string) error {
	if err := checkData(data); err != nil {
		return err
	}
	if n := len(attributes); n > MaxAttributes {
		return fmt.Errorf("%w: %d attributes, at most %d allowed", ErrInvalid, n, MaxAttributes)
	}
	// Sorted, so that the same message always gets the same complaint.
	for _, k := range slices.Sorted(maps.Keys(attributes)) {
		v := attributes[k]
		switch {
		case k == "":
			return fmt.Errorf("%w: attribute key is empty", ErrInvalid)
		case len(k) > MaxAttributeKeyBytes:
			return fmt.Errorf("%w: attribute key %.40q is %d bytes, at most %d allowed", ErrInvalid, k, len(k), MaxAttributeKeyBytes)
		case !utf8.ValidString(k):
			return fmt.Errorf("%w: attribute key %q is not valid UTF-8", ErrInvalid, k)
		case len(v) > MaxAttributeValueBytes:
			return fmt.Errorf("%w: attribute %q is %d bytes, at most %d allowed", ErrInvalid, k, len(v), MaxAttributeValueBytes)
		case !utf8.ValidString(v):
			return fmt.Errorf("%w: attribute %q is not valid UTF-8", ErrInvalid, k)
		}
	}
	return checkIdempotencyKey(key)
}

// checkIdempotencyKey accepts no key, or 1–128 printable ASCII characters:
// keys are compared byte for byte and stored, so nothing that a log, a
// terminal or a normalizing proxy could show or change differently.
func checkIdempotencyKey(key string) error {
	if n := len(key); n > MaxIdempotencyKeyBytes {
		return fmt.Errorf("%w: idempotency key is %d bytes, at most %d allowed", ErrInvalid, n, MaxIdempotencyKeyBytes)
	}
	for i := range len(key) {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: idempotency key has byte %#02x at %d: only printable ASCII characters are allowed", ErrInvalid, c, i)
		}
	}
	return nil
}

// Publish posts m to every subscriber of its topic, and of every pattern
// that matches it (wsproto.MatchingPatterns), and counts the outcomes: a
// connection subscribed to the topic and to patterns gets the message once
// and is counted once.
//
// With Options.Streams, the message first takes its topic's next position,
// which its envelope carries, and is retained for HistoryTTL. A message
// with an idempotency key first reserves the key: if an accepted publish
// to the topic holds it, Publish delivers nothing and returns that
// publish's id and position with Duplicate set. A message that cannot be
// delivered (invalid, or its envelope over API Gateway's limit) takes no
// position. If the position or the retention fails, nothing is posted
// and the key is freed for a retry; so it is if the first page of
// subscribers cannot be read. Once anything may have been posted, the key
// stays taken: a retry must not post the message again.
//
// Each subscriber gets the same envelope bytes, encoded once. A connection
// that is gone (410) is deleted from the store with all its subscriptions.
// Throttling, 5xx, timeouts and transport errors are retried with jittered
// backoff up to MaxAttempts (a 429 the fan-out has answered by slowing down
// does not count); a post that timed out may have arrived, so a retry can
// deliver twice (clients dedupe by message id). Posts start as fast as the
// management API absorbs them, and no faster (see flow).
//
// Publish returns an error when m is invalid (ErrInvalid; nothing read,
// stored or posted), when the streams failed (wrapping
// store.ErrUnavailable, or ctx's error if ctx ended the call; nothing
// posted) or when subscribers could not be read (likewise). A failure on
// the first page means nothing was posted; on a later page, the Result
// counts what was.
//
// ctx bounds the whole publish. When it ends after the first page was read,
// posting stops, every subscriber read but not delivered counts as Failed,
// and the Result comes back with a nil error: the caller knows its own
// deadline, and the counts say what it cost. No goroutine outlives Publish.
func (f *Fanout) Publish(ctx context.Context, m Message) (res Result, err error) {
	start := time.Now()
	defer func() { f.opts.Observer.PublishDone(res, err, time.Since(start)) }()
	if err := validate(m); err != nil {
		return Result{}, err
	}
	return f.send(ctx, sending{
		frame:    wsproto.Message{Topic: m.Topic, Data: m.Data, Attributes: m.Attributes},
		stream:   m.Topic,
		keyScope: m.Topic,
		key:      m.IdempotencyKey,
		to:       f.subscribersOf(m.Topic),
		log:      f.opts.Logger.With("topic", m.Topic),
	})
}

// sending is one message on its way: its frame, whom it goes to, and where
// its position and idempotency key are kept. A topic's message and a
// user's take the same path through send; only these differ.
type sending struct {
	// frame is the message but its id, time and position, which send
	// gives it.
	frame wsproto.Message
	// stream is the topic whose next position the message takes (with
	// Options.Streams), "" for a message outside any stream (a user's).
	stream string
	// keyScope is where the idempotency key is reserved: the topic, or a
	// name no topic can have for a user's messages (userKeyScope).
	keyScope, key string
	to            recipients
	log           *slog.Logger
}

// send is the one delivery path of every message (see Publish, which
// documents it): reserve the key, take the position, retain, then post to
// every recipient, page after page.
func (f *Fanout) send(ctx context.Context, s sending) (res Result, err error) {
	if s.key != "" && f.opts.Streams == nil {
		return Result{}, errors.New("fanout: an idempotency key needs Options.Streams to remember it")
	}
	positioned := s.stream != "" && f.opts.Streams != nil
	id := f.opts.NewID()
	msg := s.frame
	msg.ID, msg.PublishTime = id, f.opts.Now()
	// Sized with the longest position there is, before taking one: a
	// message too large to deliver must not consume an offset (a gap
	// every subscriber would try to recover).
	sized, room := msg, ""
	if positioned {
		sized, room = wsproto.WithLongestPosition(msg), " with room for its position"
	}
	if err := checkEnvelope(sized, room); err != nil {
		return Result{}, err
	}

	log := s.log.With("message_id", id)
	if s.key != "" {
		o, err := f.opts.Streams.Reserve(ctx, s.keyScope, s.key)
		if errors.Is(err, store.ErrDuplicate) {
			return Result{MessageID: o.MessageID, Position: o.Position, Duplicate: true}, nil
		}
		if err != nil {
			return Result{}, streamError(ctx, "reserve the idempotency key", err)
		}
		log = log.With("idempotency_key", s.key)
	}
	// posted turns true once a post may have been made; until then a
	// failure frees the key.
	posted := false
	defer func() {
		if s.key != "" {
			o := store.Outcome{MessageID: res.MessageID, Position: res.Position}
			f.settleKey(ctx, log, s.keyScope, s.key, o, err == nil || posted)
		}
	}()

	if positioned {
		if msg.Offset, msg.Epoch, err = f.position(ctx, s.stream); err != nil {
			return Result{}, err
		}
	}
	envelope, err := wsproto.EncodeMessage(msg)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(envelope) > MaxEnvelopeBytes {
		// Only a store breaking MaxEpochBytes gets here: the bound above
		// held everything the caller controls.
		return Result{}, fmt.Errorf("fanout: envelope with epoch %q is %d bytes, over the bound of %d", msg.Epoch, len(envelope), MaxEnvelopeBytes)
	}
	res = Result{MessageID: id, Position: store.Position{Epoch: msg.Epoch, Offset: msg.Offset}}
	if positioned && f.opts.HistoryTTL > 0 {
		r := store.Retained{Offset: msg.Offset, Envelope: envelope}
		if err := f.opts.Streams.Retain(ctx, s.stream, res.Position, r, f.opts.HistoryTTL); err != nil {
			return Result{}, streamError(ctx, "retain the message", err)
		}
	}

	first, err := f.lookup(ctx, s.to, "")
	if err != nil {
		return res, lookupError(ctx, s.to, err)
	}
	posted = true
	d := &delivery{Fanout: f, envelope: envelope, log: log}
	counts, err := d.run(ctx, s.to, first, d.deliver)
	counts.MessageID, counts.Position = res.MessageID, res.Position
	return counts, err
}

// checkEnvelope refuses a message whose envelope API Gateway would refuse;
// room says what the size includes beyond the message itself.
func checkEnvelope(m wsproto.Message, room string) error {
	envelope, err := wsproto.EncodeMessage(m)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(envelope) > MaxEnvelopeBytes {
		return fmt.Errorf("%w: envelope%s is %d bytes, API Gateway's limit is %d", ErrInvalid, room, len(envelope), MaxEnvelopeBytes)
	}
	return nil
}

// position takes topic's next position. Its counter is kept at least as
// long as the messages it numbers, so History never holds offsets of an
// epoch the counter has forgotten.
func (f *Fanout) position(ctx context.Context, topic string) (uint64, string, error) {
	keep := max(store.PositionKeep, f.opts.HistoryTTL)
	pos, err := f.opts.Streams.NextPosition(ctx, topic, keep)
	if err != nil {
		return 0, "", streamError(ctx, "take the next position", err)
	}
	return pos.Offset, pos.Epoch, nil
}

// settleKey records the publish's outcome under its key (accepted: the
// message may have reached someone, so a retry must not post it again),
// or frees the key (nothing was posted: a retry should go through). A key
// left pending would make every retry wait on it until IdempotencyWindow
// passed, so settling is tried again (as a post is) within CallTimeout,
// and runs even when ctx has ended. A failure is logged, not returned: the
// publish itself is decided.
func (f *Fanout) settleKey(ctx context.Context, log *slog.Logger, scope, key string, o store.Outcome, accepted bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.CallTimeout)
	defer cancel()
	what, settle := "release the idempotency key", func() error {
		return f.opts.Streams.Release(ctx, scope, key)
	}
	if accepted {
		what, settle = "record the idempotency key's outcome", func() error {
			return f.opts.Streams.Complete(ctx, scope, key, o)
		}
	}
	var err error
	for attempt := 1; attempt <= f.opts.MaxAttempts; attempt++ {
		if err = settle(); err == nil || errors.Is(err, store.ErrInvalidArgument) {
			break
		}
		if smithytime.SleepWithContext(ctx, f.backoff(attempt)) != nil {
			break
		}
	}
	if err != nil {
		log.WarnContext(ctx, "fanout: "+what, "err", err)
	}
}

// lookup reads one page of recipients, timed for the Observer: what the
// delivery waits for a page, however many store reads make it (a topic's
// first page reads the topic's and its patterns' lists at once).
func (f *Fanout) lookup(ctx context.Context, to recipients, pageToken string) (page, error) {
	start := time.Now()
	defer func() { f.opts.Observer.LookupDone(time.Since(start)) }()
	return to.read(ctx, f.opts.PageSize, pageToken)
}

// delivery is one message (or one disconnect) being posted to its
// recipients.
type delivery struct {
	*Fanout
	envelope []byte
	log      *slog.Logger
}

// run feeds connection ids, page after page, to a pool of workers that do
// each to every one of them, so that reading the next page overlaps posting
// the current one. A worker lives as long as the run and handles one
// connection after another; a new one starts only when every worker is
// busy and the flow's window has room.
func (d *delivery) run(ctx context.Context, to recipients, pg page, each func(context.Context, string) outcome) (Result, error) {
	jobs := make(chan string)
	var (
		wg      sync.WaitGroup
		tallies []*Result // one per worker: no shared counters
	)
	hire := func() {
		t := new(Result)
		tallies = append(tallies, t)
		wg.Go(func() {
			for connID := range jobs {
				t.add(each(ctx, connID))
			}
		})
	}

	var res Result
	var err error
feed:
	for {
		for i, connID := range pg.ids {
			select {
			case jobs <- connID: // an idle worker took it
				continue
			default:
			}
			if len(tallies) < d.flow.windowSize() {
				hire()
			}
			select {
			case jobs <- connID:
			case <-ctx.Done():
				res.Failed += len(pg.ids) - i
				break feed
			}
		}
		if pg.next == "" {
			break
		}
		pg, err = d.lookup(ctx, to, pg.next)
		if err != nil {
			if ctx.Err() != nil {
				err = nil // the deadline, not the store: see Publish
			} else {
				err = lookupError(ctx, to, err)
			}
			break
		}
	}
	close(jobs)
	wg.Wait()

	for _, t := range tallies {
		res.Delivered += t.Delivered
		res.Gone += t.Gone
		res.Failed += t.Failed
	}
	if ctx.Err() != nil {
		d.log.WarnContext(ctx, "fanout: ended by its context", "err", ctx.Err(),
			"delivered", res.Delivered, "gone", res.Gone, "failed", res.Failed)
	}
	return res, err
}

type outcome int

const (
	delivered outcome = iota
	gone
	failed
)

func (r *Result) add(o outcome) {
	switch o {
	case delivered:
		r.Delivered++
	case gone:
		r.Gone++
	case failed:
		r.Failed++
	}
}

// deliver posts the envelope to one connection. A gone connection is
// forgotten.
func (d *delivery) deliver(ctx context.Context, connID string) outcome {
	err := d.call(ctx, connID, "post", d.post)
	switch {
	case err == nil:
		return delivered
	case errors.Is(err, apigw.ErrGone):
		d.forget(ctx, connID)
		return gone
	}
	return failed
}

// call makes one management call to a connection (a post, a close) under
// the flow, retrying what may pass, and returns how it ended. A 429 the
// flow has since answered by slowing down does not count against
// MaxAttempts: it says the pace was too fast, not that the call is doomed.
func (d *delivery) call(ctx context.Context, connID, what string, fn func(context.Context, string) error) error {
	for attempt, charged := 1, 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t, ok := d.flow.acquire(ctx)
		if !ok {
			return ctx.Err()
		}
		err := d.timed(ctx, connID, fn)
		if forgiven := d.flow.release(t, flowAnswer(ctx, err), connID); !forgiven {
			charged++
		}
		switch {
		case err == nil || errors.Is(err, apigw.ErrGone):
			return err
		case ctx.Err() != nil:
			return err // counted in run's summary, not logged one by one
		case !retryable(err) || charged >= d.opts.MaxAttempts:
			d.log.WarnContext(ctx, "fanout: "+what+" failed", "connection_id", connID, "attempts", attempt, "err", err)
			return err
		}
		d.opts.Observer.Retry()
		if smithytime.SleepWithContext(ctx, d.backoff(attempt)) != nil {
			return err
		}
	}
}

// timed runs one management call within CallTimeout.
func (d *delivery) timed(ctx context.Context, connID string, fn func(context.Context, string) error) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.CallTimeout)
	defer cancel()
	return fn(ctx, connID)
}

func (d *delivery) post(ctx context.Context, connID string) error {
	return d.poster.PostToConnection(ctx, connID, d.envelope)
}

// forget deletes a gone connection and all its subscriptions, so later
// publishes stop posting to it. A failure only costs a wasted post next
// time: the item's TTL removes it eventually.
func (d *delivery) forget(ctx context.Context, connID string) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.CallTimeout)
	defer cancel()
	if err := d.subs.DeleteConnection(ctx, connID); err != nil {
		d.log.WarnContext(ctx, "fanout: delete gone connection", "connection_id", connID, "err", err)
	}
}

// flowAnswer is what a post's outcome tells the flow.
func flowAnswer(ctx context.Context, err error) answer {
	switch {
	case ctx.Err() != nil:
		return abandoned
	case errors.Is(err, apigw.ErrThrottled):
		return throttled
	}
	return answered
}

// retryable reports whether another attempt may succeed. A per-call timeout
// shows as context.DeadlineExceeded while the publish's ctx is still live.
func retryable(err error) bool {
	return errors.Is(err, apigw.ErrThrottled) ||
		errors.Is(err, apigw.ErrServer) ||
		errors.Is(err, apigw.ErrUnreachable) ||
		errors.Is(err, context.DeadlineExceeded)
}

// backoff is "full jitter": uniform in [0, min(MaxBackoff, BaseBackoff·2^(attempt-1))),
// which spreads the retries of many connections throttled at once.
func (f *Fanout) backoff(attempt int) time.Duration {
	ceiling := f.opts.BaseBackoff
	for i := 1; i < attempt && ceiling < f.opts.MaxBackoff; i++ {
		ceiling *= 2
	}
	return rand.N(min(ceiling, f.opts.MaxBackoff))
}

// lookupError makes a failed subscriber read one the edge can map: ctx's own
// error if that is what ended the read, store.ErrUnavailable otherwise.
func lookupError(ctx context.Context, to recipients, err error) error {
	return fmt.Errorf("read %s: %w", to, storeCause(ctx, err))
}

// streamError is lookupError for the calls that number, retain and
// deduplicate messages.
func streamError(ctx context.Context, what string, err error) error {
	return fmt.Errorf("%s: %w", what, storeCause(ctx, err))
}

func storeCause(ctx context.Context, err error) error {
	cause := store.ErrUnavailable
	if ctx.Err() != nil {
		cause = ctx.Err()
	}
	if !errors.Is(err, cause) {
		err = fmt.Errorf("%w: %w", cause, err)
	}
	return err
}
