//go:build load

package devstack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// The churn test runs under `make test-load` (build tag load), not
// `make test`: it holds 2,000 sockets and takes about a minute.
const (
	churnClients = 2000
	churnTopics  = 50
	// Each client subscribes to 1 to churnMaxTopics of the topics.
	churnMaxTopics = 6
	// Clients dialling, churning or pinging at once.
	churnWidth = 32
	// How long $disconnect may take to clean up after the clean closes.
	churnSettle = time.Minute
)

// fate is what a client does after subscribing; each befalls a quarter.
type fate int

const (
	closes       fate = iota // closes cleanly: its $disconnect cleans up
	vanishes                 // dropped without $disconnect: a publish's 410 cleans up
	unsubscribes             // unsubscribes from some of its topics, stays connected
	stays
)

// TestChurn checks "nothing lost, nothing leaked" under churn: 2,000 browsers
// subscribe to a random mix of topics over the DynamoDB store; a quarter
// close, a quarter vanish, a quarter unsubscribe from some topics, a quarter
// stay. After one publish to every topic, every live subscription got its
// message exactly once and the table holds exactly the live subscriptions,
// item by item.
func TestChurn(t *testing.T) {
	seed := churnSeed(t)
	needOpenFiles(t, 2*churnClients+512) // both ends of every socket are in this process

	db := dynalite.Start(t)
	env := map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"DYNAMODB_ENDPOINT": db.Endpoint(), "TABLE_NAME": "churn",
	}
	e := start(t, env)
	tbl := openTable(t, env)

	topics := make([]string, churnTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("churn.%02d", i)
	}
	clients := plan(rand.New(rand.NewPCG(seed, 0)), topics)
	t.Cleanup(func() {
		for _, c := range clients {
			if c.conn != nil {
				c.conn.CloseNow()
			}
		}
	})
	wsURL := "ws://" + e.stack.WSAddr + "/"
	began := time.Now()

	each(t, "connect and subscribe", clients, func(ctx context.Context, c *churnClient) error {
		return c.connect(ctx, wsURL)
	})
	tbl.learnIDs(t, clients)
	tbl.expect(t, "after subscribing", itemsOf(clients, (*churnClient).subscribed))
	t.Logf("%d clients connected and subscribed in %v", len(clients), time.Since(began).Round(time.Millisecond))

	mark := time.Now()
	each(t, "churn", clients, func(ctx context.Context, c *churnClient) error {
		switch c.fate {
		case closes:
			return c.conn.Close(websocket.StatusNormalClosure, "bye")
		case vanishes:
			if !e.stack.Emulator.Drop(c.id) {
				return fmt.Errorf("client %d: Drop(%s) found no connection", c.n, c.id)
			}
		case unsubscribes:
			return c.request(ctx, wsproto.ActionUnsubscribe, c.dropped, wsproto.Unsubscribed(c.dropped))
		}
		return nil
	})
	// $disconnect is asynchronous, on AWS too. The vanished connections had
	// none, so the store still holds them in full.
	remaining := having(clients, vanishes, unsubscribes, stays)
	tbl.settle(t, "after the churn", itemsOf(remaining, (*churnClient).live), churnSettle)
	t.Logf("churn settled in %v", time.Since(mark).Round(time.Millisecond))

	mark = time.Now()
	live := having(clients, unsubscribes, stays)
	for _, c := range live {
		go c.read()
	}
	ids := publishAll(t, e, topics, clients)
	each(t, "ping after the publishes", live, func(ctx context.Context, c *churnClient) error {
		return c.ping(ctx)
	})
	t.Logf("%d publishes and their deliveries in %v", len(topics), time.Since(mark).Round(time.Millisecond))

	// Each socket's pong followed every frame posted to it before: what a
	// client has recorded now is all it will ever get from those publishes.
	var wrong []string
	for _, c := range live {
		if errs := c.misdelivered(ids); len(errs) > 0 {
			wrong = append(wrong, fmt.Sprintf("client %d (%s): %s", c.n, c.id, strings.Join(errs, "; ")))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d live clients did not get exactly one message per live subscription:\n%s",
			len(wrong), len(live), strings.Join(wrong[:min(len(wrong), 10)], "\n"))
	}

	// Every vanished connection was subscribed to some topic, so a 410
	// removed it with all its subscriptions; nothing waits on anything now.
	tbl.expect(t, "after the publishes", itemsOf(live, (*churnClient).live))

	t.Run("expired items are never returned", func(t *testing.T) {
		testExpiry(t, e, tbl, topics, live)
	})
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// publishAll publishes once to every topic, in order, and checks each
// result against the plan; it returns the message id of each topic. The
// first publish to reach a vanished connection gets 410 and deletes it
// whole, so that publish counts it gone and later ones never see it.
func publishAll(t *testing.T, e *e2e, topics []string, clients []*churnClient) map[string]string {
	t.Helper()
	wantDelivered, wantGone := make(map[string]int32), make(map[string]int32)
	for _, c := range having(clients, unsubscribes, stays) {
		for _, topic := range c.live() {
			wantDelivered[topic]++
		}
	}
	for _, c := range having(clients, vanishes) {
		wantGone[c.topics[0]]++ // c.topics is sorted, as topics is
	}

	ids := make(map[string]string, len(topics))
	var delivered, gone int32
	for _, topic := range topics {
		res, err := e.grpc.Publish(context.Background(), &wsgatewayv1.PublishRequest{
			Topic: topic, Data: structpb.NewStringValue(topic),
		})
		if err != nil {
			t.Fatalf("Publish(%s): %v", topic, err)
		}
		if res.Delivered != wantDelivered[topic] || res.Gone != wantGone[topic] || res.Failed != 0 {
			t.Errorf("Publish(%s) = %v, want %d delivered, %d gone, 0 failed", topic, res, wantDelivered[topic], wantGone[topic])
		}
		ids[topic] = res.MessageId
		delivered += res.Delivered
		gone += res.Gone
	}
	t.Logf("publishes: %d delivered, %d gone", delivered, gone)
	return ids
}

// testExpiry shows that an item past its TTL is never returned though
// DynamoDB has not deleted it yet (it does so within days, not at once).
func testExpiry(t *testing.T, e *e2e, tbl *table, topics []string, live []*churnClient) {
	ctx := context.Background()
	expiry := store.MaxConnectionLifetime + store.TTLSlack + time.Minute

	// The same table read three hours on: every live item is still in it
	// (tbl.expect scanned it), yet that store sees none of them, while the
	// devstack's store, on the real clock, sees them all.
	later := store.NewDynamoDB(tbl.db, tbl.name, store.WithClock(func() time.Time { return time.Now().Add(expiry) }))
	for _, topic := range topics {
		var want []string
		for _, c := range live {
			if slices.Contains(c.live(), topic) {
				want = append(want, c.id)
			}
		}
		slices.Sort(want)
		if got := subscriberIDs(t, e.stack.Store, topic); !slices.Equal(got, want) {
			t.Errorf("Subscribers(%s) = %v, want %v", topic, got, want)
		}
		if got := subscriberIDs(t, later, topic); len(got) != 0 {
			t.Errorf("Subscribers(%s) three hours on returned %d (first %s), want none: they have expired", topic, len(got), got[0])
		}
	}
	each(t, "read the live connections now and later", live, func(ctx context.Context, c *churnClient) error {
		var errs []error
		if conn, err := e.stack.Store.GetConnection(ctx, c.id); err != nil || conn.UserAgent != c.agent() {
			errs = append(errs, fmt.Errorf("GetConnection(%s) = %+v, %v; want the connection", c.id, conn, err))
		}
		if got, err := e.stack.Store.Topics(ctx, c.id); err != nil || !sameSet(got, c.live()) {
			errs = append(errs, fmt.Errorf("Topics(%s) = %v, %v; want %v", c.id, got, err, c.live()))
		}
		if _, err := later.GetConnection(ctx, c.id); !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("GetConnection(%s) three hours on: %v, want ErrNotFound", c.id, err))
		}
		if got, err := later.Topics(ctx, c.id); err != nil || len(got) != 0 {
			errs = append(errs, fmt.Errorf("Topics(%s) three hours on = %v, %v; want none", c.id, got, err))
		}
		return errors.Join(errs...)
	})

	// Items written three hours ago are in the table but not in the store,
	// and the fan-out never posts to them: it would get 410 for an unknown
	// connection and count it gone.
	earlier := store.NewDynamoDB(tbl.db, tbl.name, store.WithClock(func() time.Time { return time.Now().Add(-expiry) }))
	const ghost, topic = "expired-connection", "churn.expired"
	if err := earlier.PutConnection(ctx, store.Connection{ID: ghost, ConnectedAt: time.Now().Add(-expiry)}); err != nil {
		t.Fatal(err)
	}
	if err := earlier.Subscribe(ctx, ghost, "", []string{topic}); err != nil {
		t.Fatal(err)
	}
	want := itemsOf(live, (*churnClient).live)
	want[connItem(ghost)], want[subItem(topic, ghost)] = true, true
	tbl.expect(t, "with expired items", want)

	if _, err := e.stack.Store.GetConnection(ctx, ghost); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetConnection of an expired connection: %v, want ErrNotFound", err)
	}
	if got, err := e.stack.Store.Topics(ctx, ghost); err != nil || len(got) != 0 {
		t.Errorf("Topics of an expired connection = %v, %v; want none", got, err)
	}
	if got := subscriberIDs(t, e.stack.Store, topic); len(got) != 0 {
		t.Errorf("Subscribers(%s) = %v, want none: the only one has expired", topic, got)
	}
	res, err := e.grpc.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: topic, Data: structpb.NewBoolValue(true)})
	if err != nil || res.Delivered != 0 || res.Gone != 0 || res.Failed != 0 {
		t.Errorf("Publish(%s) = %v, %v; want nothing delivered, gone or failed", topic, res, err)
	}
	tbl.expect(t, "after publishing to expired items", want) // not even a cleanup touched them
}

func subscriberIDs(t *testing.T, s store.Store, topic string) []string {
	t.Helper()
	var ids []string
	token := ""
	for {
		page, err := s.Subscribers(context.Background(), topic, 500, token)
		if err != nil {
			t.Fatalf("Subscribers(%s): %v", topic, err)
		}
		for _, sub := range page.Subscriptions {
			ids = append(ids, sub.ConnectionID)
		}
		if token = page.NextToken; token == "" {
			return ids
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// churnClient is one browser of the churn test.
type churnClient struct {
	n       int
	fate    fate
	topics  []string // subscribed to, sorted
	dropped []string // unsubscribed from, when the fate is unsubscribes

	conn *websocket.Conn
	id   string // its connection id, learned from the store
	pong chan struct{}

	mu    sync.Mutex
	got   map[string][]string // topic → ids of the messages received
	other []string            // frames that are neither messages nor pongs
}

// plan draws every client's topics and fate from rng: its random seed
// alone decides the scenario.
func plan(rng *rand.Rand, topics []string) []*churnClient {
	clients := make([]*churnClient, churnClients)
	for i := range clients {
		mine := make([]string, 1+rng.IntN(churnMaxTopics))
		for j, k := range rng.Perm(len(topics))[:len(mine)] {
			mine[j] = topics[k]
		}
		slices.Sort(mine)
		clients[i] = &churnClient{n: i, topics: mine, pong: make(chan struct{}, 1), got: make(map[string][]string)}
	}
	for i, k := range rng.Perm(len(clients)) {
		c := clients[k]
		c.fate = fate(i * 4 / len(clients))
		if c.fate == unsubscribes {
			// Some of its topics, possibly all: then it stays connected
			// with no subscription, and must receive nothing.
			drop := slices.Clone(c.topics)
			rng.Shuffle(len(drop), func(i, j int) { drop[i], drop[j] = drop[j], drop[i] })
			c.dropped = drop[:1+rng.IntN(len(drop))]
			slices.Sort(c.dropped)
		}
	}
	return clients
}

func having(clients []*churnClient, fates ...fate) []*churnClient {
	return slices.DeleteFunc(slices.Clone(clients), func(c *churnClient) bool {
		return !slices.Contains(fates, c.fate)
	})
}

// agent is the User-Agent the client connects with; the store records it,
// which is how the test learns the client's connection id.
func (c *churnClient) agent() string { return "churn-client/" + strconv.Itoa(c.n) }

// subscribed is what the client subscribed to; live, what it still is.
func (c *churnClient) subscribed() []string { return c.topics }

func (c *churnClient) live() []string {
	return slices.DeleteFunc(slices.Clone(c.topics), func(t string) bool { return slices.Contains(c.dropped, t) })
}

func (c *churnClient) connect(ctx context.Context, url string) error {
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader: http.Header{"User-Agent": {c.agent()}},
	})
	if err != nil {
		return fmt.Errorf("client %d: dial: %w", c.n, err)
	}
	c.conn = conn
	// The positions in the answer depend on what was published before:
	// the answer must say where each topic starts, whatever that is.
	positions := make(map[string]wsproto.Position, len(c.topics))
	for _, t := range c.topics {
		positions[t] = wsproto.Position{}
	}
	return c.request(ctx, wsproto.ActionSubscribe, c.topics, wsproto.Subscribed(c.topics, positions, nil))
}

// request sends a subscribe or unsubscribe frame and expects its answer
// before anything else.
func (c *churnClient) request(ctx context.Context, action string, topics []string, want []byte) error {
	frame, _ := json.Marshal(wsproto.Request{Action: action, Topics: topics})
	if err := c.conn.Write(ctx, websocket.MessageText, frame); err != nil {
		return fmt.Errorf("client %d: send %s: %w", c.n, frame, err)
	}
	_, got, err := c.conn.Read(ctx)
	if err != nil {
		return fmt.Errorf("client %d: read the answer to %s: %w", c.n, frame, err)
	}
	if !jsonEqual(withoutPositionValues(got), want) {
		return fmt.Errorf("client %d: %s was answered %s, want %s", c.n, frame, got, want)
	}
	return nil
}

// read records every frame until the connection ends.
func (c *churnClient) read() {
	for {
		_, frame, err := c.conn.Read(context.Background())
		if err != nil {
			return
		}
		var m wsproto.Message
		_ = json.Unmarshal(frame, &m)
		if m.Type == wsproto.TypePong {
			c.pong <- struct{}{}
			continue
		}
		c.mu.Lock()
		if m.Type == wsproto.TypeMessage {
			c.got[m.Topic] = append(c.got[m.Topic], m.ID)
		} else {
			c.other = append(c.other, string(frame))
		}
		c.mu.Unlock()
	}
}

// ping waits for the answer to a ping, which comes after every frame that
// was posted to the connection before it.
func (c *churnClient) ping(ctx context.Context) error {
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)); err != nil {
		return fmt.Errorf("client %d: ping: %w", c.n, err)
	}
	select {
	case <-c.pong:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client %d: no pong: %w", c.n, ctx.Err())
	}
}

// misdelivered lists how what the client received differs from exactly
// one message, of the given ids, per live subscription.
func (c *churnClient) misdelivered(ids map[string]string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []string
	live := c.live()
	for _, topic := range live {
		if got := c.got[topic]; !slices.Equal(got, []string{ids[topic]}) {
			errs = append(errs, fmt.Sprintf("%s: got messages %q, want %q once", topic, got, ids[topic]))
		}
	}
	for _, topic := range slices.Sorted(maps.Keys(c.got)) {
		if !slices.Contains(live, topic) {
			errs = append(errs, fmt.Sprintf("%s: got %d messages, want none: not subscribed", topic, len(c.got[topic])))
		}
	}
	for _, frame := range c.other {
		errs = append(errs, "unexpected frame "+frame)
	}
	return errs
}

// each runs fn for every client, churnWidth at a time, each call bounded by
// a generous timeout, and fails the test with the first errors.
func each(t *testing.T, what string, clients []*churnClient, fn func(context.Context, *churnClient) error) {
	t.Helper()
	var (
		g    errgroup.Group
		mu   sync.Mutex
		errs []error
	)
	g.SetLimit(churnWidth)
	for _, c := range clients {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := fn(ctx, c); err != nil {
				mu.Lock()
				errs = append(errs, err) // every failure is counted, not just the first
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through errs
	if len(errs) > 0 {
		t.Fatalf("%s: %d of %d clients failed, first:\n%v", what, len(errs), len(clients), errors.Join(errs[:min(len(errs), 5)]...))
	}
}

// table reads the devstack's DynamoDB table directly. The product never
// scans; the test does, to see every item, whatever the store would return.
type table struct {
	db   *dynamodb.Client
	name string
}

func openTable(t *testing.T, env map[string]string) *table {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	awsCfg, err := cfg.AWS(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	return &table{db: store.NewDynamoDBClient(awsCfg, cfg.DynamoDBEndpoint), name: cfg.TableName}
}

func (tbl *table) scan(t *testing.T) []map[string]types.AttributeValue {
	t.Helper()
	var items []map[string]types.AttributeValue
	pages := dynamodb.NewScanPaginator(tbl.db, &dynamodb.ScanInput{TableName: &tbl.name, ConsistentRead: aws.Bool(true)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("scan %s: %v", tbl.name, err)
		}
		items = append(items, page.Items...)
	}
	return items
}

// Items are named "pk sk", in the layout of store/schema.go.
func connItem(id string) string       { return "conn#" + id + " conn#" + id }
func subItem(topic, id string) string { return "topic#" + topic + " conn#" + id }

// streamItem reports whether an item belongs to a topic's stream (its
// position counter, retained messages, idempotency keys): those outlive
// connections by design, expiring on their own, so they are no leak.
func streamItem(name string) bool {
	for _, prefix := range []string{"pos#", "hist#", "idem#"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

func itemName(item map[string]types.AttributeValue) string {
	return attr(item, "pk") + " " + attr(item, "sk")
}

func attr(item map[string]types.AttributeValue, name string) string {
	s, _ := item[name].(*types.AttributeValueMemberS)
	if s == nil {
		return ""
	}
	return s.Value
}

// itemsOf is what the clients' connections and the given topics of theirs
// should leave in the table.
func itemsOf(clients []*churnClient, topicsOf func(*churnClient) []string) map[string]bool {
	items := make(map[string]bool)
	for _, c := range clients {
		items[connItem(c.id)] = true
		for _, topic := range topicsOf(c) {
			items[subItem(topic, c.id)] = true
		}
	}
	return items
}

// learnIDs finds each client's connection item by its User-Agent.
func (tbl *table) learnIDs(t *testing.T, clients []*churnClient) {
	t.Helper()
	byAgent := make(map[string]string)
	for _, item := range tbl.scan(t) {
		if pk := attr(item, "pk"); strings.HasPrefix(pk, "conn#") {
			byAgent[attr(item, "userAgent")] = strings.TrimPrefix(pk, "conn#")
		}
	}
	for _, c := range clients {
		if c.id = byAgent[c.agent()]; c.id == "" {
			t.Fatalf("no connection item has client %d's User-Agent %q", c.n, c.agent())
		}
	}
}

// expect checks the table item by item: nothing in it that is not in
// want (leaked), nothing of want missing (lost).
func (tbl *table) expect(t *testing.T, when string, want map[string]bool) {
	t.Helper()
	if leaked, lost := tbl.diff(t, want); len(leaked)+len(lost) > 0 {
		t.Fatalf("%s: the table has %d leaked items (first: %q) and lost %d (first: %q)",
			when, len(leaked), leaked[:min(len(leaked), 5)], len(lost), lost[:min(len(lost), 5)])
	}
}

// settle is expect for a table still catching up, polled up to within.
func (tbl *table) settle(t *testing.T, when string, want map[string]bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		leaked, lost := tbl.diff(t, want)
		if len(leaked)+len(lost) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %v the table still has %d leaked items (first: %q) and lost %d (first: %q)",
				when, within, len(leaked), leaked[:min(len(leaked), 5)], len(lost), lost[:min(len(lost), 5)])
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (tbl *table) diff(t *testing.T, want map[string]bool) (leaked, lost []string) {
	t.Helper()
	have := make(map[string]bool)
	for _, item := range tbl.scan(t) {
		name := itemName(item)
		if streamItem(name) {
			continue
		}
		if have[name] = true; !want[name] {
			leaked = append(leaked, name)
		}
	}
	for name := range want {
		if !have[name] {
			lost = append(lost, name)
		}
	}
	slices.Sort(leaked)
	slices.Sort(lost)
	return leaked, lost
}

// churnSeed is CHURN_SEED if set, else random; it is logged so that a
// failing mix can be replayed.
func churnSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv("CHURN_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("CHURN_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d: CHURN_SEED=%d make test-load replays this mix of topics and fates", seed, seed)
	return seed
}

// needOpenFiles raises the soft limit on open files to the hard one if it
// is below n (Go does so at start on most systems already).
func needOpenFiles(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("read the open file limit: %v", err)
	}
	if uint64(lim.Cur) < n {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("raise the open file limit to %d: %v", lim.Max, err)
		}
	}
	if uint64(lim.Cur) < n {
		t.Fatalf("the open file limit is %d, the churn test needs %d: raise the hard limit (ulimit -Hn)", lim.Cur, n)
	}
}

// withoutPositionValues blanks the value of each topic's position in a
// subscribed answer, keeping which topics have one.
func withoutPositionValues(frame []byte) []byte {
	var f map[string]json.RawMessage
	if json.Unmarshal(frame, &f) != nil || f["positions"] == nil {
		return frame
	}
	var positions map[string]json.RawMessage
	if json.Unmarshal(f["positions"], &positions) != nil {
		return frame
	}
	blank, _ := json.Marshal(wsproto.Position{})
	for topic := range positions {
		positions[topic] = blank
	}
	f["positions"], _ = json.Marshal(positions)
	out, _ := json.Marshal(f)
	return out
}
