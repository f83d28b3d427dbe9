package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgateway/wsgateway/internal/dynalite"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/store/storetest"
)

// testConfig is what a Lambda gets from the environment, with fixed
// credentials: dynalite checks that requests are signed, not by whom.
func testConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

var tables atomic.Int64

// newTable creates a table of its own for one test.
func newTable(t *testing.T, client *dynamodb.Client) string {
	t.Helper()
	name := fmt.Sprintf("wsgateway-%d", tables.Add(1))
	if err := store.EnsureTable(t.Context(), client, name); err != nil {
		t.Fatalf("EnsureTable(%s): %v", name, err)
	}
	return name
}

// patientClient is a client for tests that count what each write did (every
// offset once): it waits 30 s for an answer, not the product's 4 s. A
// dynalite busy on a loaded test machine can answer late; the product's
// client would then retry a counter's ADD that dynalite had already applied,
// and the count would show the gap that docs/delivery.md owns up to for a
// lost answer, which is not what these tests are about.
func patientClient(endpoint string) *dynamodb.Client {
	return store.NewDynamoDBClientTimingOut(testConfig(), endpoint, 30*time.Second)
}

func TestDynamoDB(t *testing.T) {
	t.Parallel()
	client := patientClient(dynalite.Start(t).Endpoint())
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return store.NewDynamoDB(client, newTable(t, client), store.WithClock(now))
	})
}

func TestEnsureTable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := store.NewDynamoDBClient(testConfig(), dynalite.Start(t).Endpoint())

	table := newTable(t, client)
	s := store.NewDynamoDB(client, table)
	if err := s.Subscribe(ctx, "c1", "", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureTable(ctx, client, table); err != nil {
		t.Fatalf("EnsureTable on an existing table: %v", err)
	}
	if topics, err := s.Topics(ctx, "c1"); err != nil || len(topics) != 1 {
		t.Errorf("after EnsureTable again: Topics = %q, %v; want the subscription kept", topics, err)
	}

	// A table keyed another way: by connectionId alone, as a naive design would.
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("seed"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("connectionId"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("connectionId"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureTable(ctx, client, "seed"); err == nil || !strings.Contains(err.Error(), "other keys") {
		t.Errorf("EnsureTable on a foreign table = %v, want an error about its keys", err)
	}
}

// storeCall is one call of a store method, named for failure messages.
type storeCall struct {
	name string
	call func(context.Context, store.Store) error
}

// everyMethod calls each Store method once.
var everyMethod = []storeCall{
	{"PutConnection", func(ctx context.Context, s store.Store) error {
		return s.PutConnection(ctx, store.Connection{ID: "c2", ConnectedAt: time.Now()})
	}},
	{"GetConnection", func(ctx context.Context, s store.Store) error { _, err := s.GetConnection(ctx, "c1"); return err }},
	{"DeleteConnection", func(ctx context.Context, s store.Store) error { return s.DeleteConnection(ctx, "c1") }},
	{"Subscribe", func(ctx context.Context, s store.Store) error { return s.Subscribe(ctx, "c1", "", []string{"b", "c"}) }},
	{"Unsubscribe", func(ctx context.Context, s store.Store) error { return s.Unsubscribe(ctx, "c1", []string{"a"}) }},
	{"Subscribers", func(ctx context.Context, s store.Store) error { _, err := s.Subscribers(ctx, "a", 10, ""); return err }},
	{"Topics", func(ctx context.Context, s store.Store) error { _, err := s.Topics(ctx, "c1"); return err }},
	// A connection with a user is two writes at once: either failing
	// fails the call.
	{"PutConnection with a user", func(ctx context.Context, s store.Store) error {
		return s.PutConnection(ctx, store.Connection{ID: "c3", ConnectedAt: time.Now(), Subject: "u"})
	}},
	{"UserConnections", func(ctx context.Context, s store.Store) error {
		_, err := s.UserConnections(ctx, "u", 10, "")
		return err
	}},
	{"CountSubscribers", func(ctx context.Context, s store.Store) error { _, _, err := s.CountSubscribers(ctx, "a"); return err }},
	{"Ping", func(ctx context.Context, s store.Store) error { return s.Ping(ctx) }},
	{"NextPosition", func(ctx context.Context, s store.Store) error {
		_, err := s.NextPosition(ctx, "a", time.Hour)
		return err
	}},
	{"Retain", func(ctx context.Context, s store.Store) error {
		return s.Retain(ctx, "a", store.Position{Epoch: "e", Offset: 1}, store.Retained{Offset: 1, Envelope: []byte(`{}`)}, time.Minute)
	}},
	{"Positions", func(ctx context.Context, s store.Store) error {
		_, err := s.Positions(ctx, []string{"a", "b"}, time.Hour)
		return err
	}},
	{"History", func(ctx context.Context, s store.Store) error { _, _, err := s.History(ctx, "a", 0, 10); return err }},
	{"Reserve", func(ctx context.Context, s store.Store) error { _, err := s.Reserve(ctx, "a", "k"); return err }},
	{"Complete", func(ctx context.Context, s store.Store) error {
		return s.Complete(ctx, "a", "k", store.Outcome{MessageID: "m", Position: store.Position{Epoch: "e", Offset: 1}})
	}},
	{"Release", func(ctx context.Context, s store.Store) error { return s.Release(ctx, "a", "k2") }},
}

func TestDynamoDBDeadEndpointIsUnavailable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	// Without retries for the table of methods; with the SDK's standard
	// retries for one call, as in production.
	noRetries := testConfig()
	noRetries.RetryMaxAttempts = 1
	s := store.NewDynamoDB(store.NewDynamoDBClient(noRetries, dead), "wsgateway")
	for _, m := range everyMethod {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := m.call(ctx, s); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error %v, want ErrUnavailable", err)
			}
		})
	}
	t.Run("StandardRetries", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		s := store.NewDynamoDB(store.NewDynamoDBClient(testConfig(), dead), "wsgateway")
		err := s.Ping(ctx)
		if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want ErrUnavailable before the deadline", err)
		}
	})
}

func TestDynamoDBOutageAndRecovery(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := dynalite.Start(t)
	cfg := testConfig()
	cfg.RetryMaxAttempts = 1
	client := store.NewDynamoDBClient(cfg, srv.Endpoint())
	s := store.NewDynamoDB(client, newTable(t, client))
	if err := s.PutConnection(ctx, store.Connection{ID: "c1", ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, "c1", "", []string{"a"}); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	for _, m := range everyMethod {
		if err := m.call(ctx, s); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while DynamoDB is down: error %v, want ErrUnavailable", m.name, err)
		}
	}

	srv.Restart()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	if _, err := s.GetConnection(ctx, "c1"); err != nil {
		t.Errorf("GetConnection after restart: %v", err)
	}
	if topics, err := s.Topics(ctx, "c1"); err != nil || len(topics) != 1 {
		t.Errorf("Topics after restart = %q, %v; want [a]", topics, err)
	}
}

func TestDynamoDBMissingTableIsNotUnavailable(t *testing.T) {
	t.Parallel()
	client := store.NewDynamoDBClient(testConfig(), dynalite.Start(t).Endpoint())
	s := store.NewDynamoDB(client, "no-such-table")
	err := s.Ping(t.Context())
	var missing *types.ResourceNotFoundException
	if !errors.As(err, &missing) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping on a missing table: error %v, want ResourceNotFoundException, not ErrUnavailable (a fault to fix, not to retry)", err)
	}
	// /readyz tells this apart from an unreachable store.
	if !errors.Is(err, store.ErrTableNotFound) {
		t.Errorf("Ping on a missing table: error %v, want ErrTableNotFound", err)
	}
}

// A throttled burst of concurrent calls must come through: DynamoDB asks
// clients to back off, and the SDK's default retry quota would instead fail
// every throttled call at once past the first hundred retries.
func TestDynamoDBThrottledBurst(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	srv := dynalite.Start(t)
	// The burst's requests queue on one single-threaded dynalite, which on
	// a loaded machine can keep the last ones waiting past the product's
	// 4 s for an answer: a slow test machine, not a hung store.
	client := patientClient(srv.Endpoint())
	table := newTable(t, client)
	// Half again the 100 retries the SDK's quota allows (below); each call
	// is a request dynalite serves one at a time.
	const burst = 150

	// The next 150 requests are throttled: about every call's first attempt.
	// Each call retries after a few milliseconds and gets through.
	srv.ThrottleNext(burst, dynalite.ProvisionedThroughputExceeded)
	for i, err := range callBurst(ctx, store.NewDynamoDB(client, table), "ours", burst) {
		if err != nil {
			t.Errorf("call %d of the throttled burst: %v", i, err)
		}
	}
	if n := srv.Throttled(); n != burst {
		t.Fatalf("the proxy throttled %d requests, want %d: the burst was not throttled as the test means", n, burst)
	}
	page, err := store.NewDynamoDB(client, table).Subscribers(ctx, "ours", 1000, "")
	if err != nil || len(page.Subscriptions) != burst/3 {
		t.Errorf("Subscribers after the burst: %d, %v; want the %d the burst subscribed", len(page.Subscriptions), err, burst/3)
	}

	// The same burst through a client with the SDK's default retryer. No
	// request gets through before the 150 throttles are spent, so nothing
	// refills its bucket of 500 tokens: after 100 retries at 5 tokens, every
	// further throttled call fails at once. This is what the test guards
	// against.
	sdkDefault := dynamodb.NewFromConfig(testConfig(), func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(srv.Endpoint())
	})
	srv.ThrottleNext(burst, dynalite.ProvisionedThroughputExceeded)
	var outOfQuota int
	for _, err := range callBurst(ctx, store.NewDynamoDB(sdkDefault, table), "default", burst) {
		var quota ratelimit.QuotaExceededError
		if errors.As(err, &quota) {
			outOfQuota++
		}
	}
	if outOfQuota == 0 {
		t.Errorf("no call failed with the SDK's default retryer: the burst no longer shows what the store's retryer is for")
	}
	t.Logf("the SDK's default retryer failed %d of %d calls for want of retry quota", outOfQuota, burst)
}

// callBurst makes n concurrent calls, a third each of PutConnection,
// Subscribe (to topic) and Subscribers (of topic), and returns their errors.
func callBurst(ctx context.Context, s store.Store, topic string, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("%s-%03d", topic, i)
		wg.Go(func() {
			switch i % 3 {
			case 0:
				errs[i] = s.PutConnection(ctx, store.Connection{ID: id, ConnectedAt: time.Now()})
			case 1:
				errs[i] = s.Subscribe(ctx, id, "", []string{topic})
			case 2:
				_, errs[i] = s.Subscribers(ctx, topic, 10, "")
			}
		})
	}
	wg.Wait()
	return errs
}

// DynamoDB throttles with either of two errors. Both are retried, more
// patiently than by the SDK's 4 attempts for DynamoDB; under throttling that
// does not let up every method answers ErrUnavailable by itself, before the
// deadline; the caller's deadline ends the retries early; and once
// throttling ends, every method works again.
func TestDynamoDBThrottling(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := dynalite.Start(t)
	client := store.NewDynamoDBClient(testConfig(), srv.Endpoint())
	table := newTable(t, client)
	s := store.NewDynamoDB(quickerWaits(t, client), table)

	srv.ThrottleNext(4, dynalite.ProvisionedThroughputExceeded)
	if err := s.PutConnection(ctx, store.Connection{ID: "c1", ConnectedAt: time.Now()}); err != nil {
		t.Fatalf("PutConnection throttled 4 times with ProvisionedThroughputExceeded: %v, want it retried", err)
	}
	srv.ThrottleNext(4, dynalite.Throttling)
	if err := s.Subscribe(ctx, "c1", "", []string{"a"}); err != nil {
		t.Fatalf("Subscribe throttled 4 times with ThrottlingException: %v, want it retried", err)
	}
	if n := srv.Throttled(); n != 8 {
		t.Fatalf("the proxy throttled %d requests, want 8", n)
	}

	srv.Throttle(1, dynalite.ProvisionedThroughputExceeded)
	// All at once, as the retries mostly wait.
	errs := make([]error, len(everyMethod))
	var wg sync.WaitGroup
	deadline, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i, m := range everyMethod {
		wg.Go(func() { errs[i] = m.call(deadline, s) })
	}
	wg.Wait()
	for i, m := range everyMethod {
		var throttled *types.ProvisionedThroughputExceededException
		if !errors.Is(errs[i], store.ErrUnavailable) || !errors.As(errs[i], &throttled) {
			t.Errorf("%s always throttled: %v, want ErrUnavailable wrapping DynamoDB's error", m.name, errs[i])
		}
	}
	if deadline.Err() != nil {
		t.Errorf("calls always throttled ran into the deadline: their retries must end by themselves")
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	before := srv.Throttled()
	if err := store.NewDynamoDB(client, table).Ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping past the caller's deadline: %v, want context.DeadlineExceeded", err)
	}
	// The product's waits between 8 attempts add up to more than a second:
	// fewer attempts mean the deadline ended the retries.
	if n := srv.Throttled() - before; n >= 8 {
		t.Errorf("Ping made %d attempts within a 100ms deadline, want the deadline to stop them", n)
	}

	srv.Throttle(0, "")
	for _, m := range everyMethod {
		if err := m.call(ctx, s); err != nil {
			t.Errorf("%s once throttling ended: %v", m.name, err)
		}
	}
}

// quickerWaits is client with the store's retryer waiting a tenth as long
// between attempts: the same attempts, after the same errors, without a
// quota. A call throttled to its last attempt waits out over a second of
// backoff meant for DynamoDB's partitions to refill; the tests that
// throttle calls that far need not.
func quickerWaits(t *testing.T, client *dynamodb.Client) *dynamodb.Client {
	t.Helper()
	r, ok := client.Options().Retryer.(aws.RetryerV2)
	if !ok {
		t.Fatalf("the store's retryer is a %T, want an aws.RetryerV2", client.Options().Retryer)
	}
	return dynamodb.New(client.Options(), func(o *dynamodb.Options) { o.Retryer = tenthOfTheWait{r} })
}

type tenthOfTheWait struct{ aws.RetryerV2 }

func (r tenthOfTheWait) RetryDelay(attempt int, err error) (time.Duration, error) {
	d, err := r.RetryerV2.RetryDelay(attempt, err)
	return d / 10, err
}

// Two processes publishing to one topic share its counter through DynamoDB:
// their positions together are gapless, and of concurrent duplicates across
// them exactly one publishes.
func TestDynamoDBStreamsAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	endpoint := dynalite.Start(t).Endpoint()
	first := patientClient(endpoint)
	table := newTable(t, first)
	// Each with a client of its own: its own connections, as another
	// process has.
	stores := []store.Store{
		store.NewDynamoDB(first, table),
		store.NewDynamoDB(patientClient(endpoint), table),
	}
	// Eight publishers at once, four per process, as in ConcurrentNextPosition
	// (storetest): the race is the same in every round.
	const perStore, each = 4, 25
	var mu sync.Mutex
	var got []store.Position
	var wg sync.WaitGroup
	for _, s := range stores {
		for range perStore {
			wg.Go(func() {
				for range each {
					pos, err := s.NextPosition(ctx, "shared", time.Hour)
					if err != nil {
						t.Errorf("NextPosition: %v", err)
						return
					}
					mu.Lock()
					got = append(got, pos)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	storetest.WantGapless(t, got, len(stores)*perStore*each)
	storetest.WantOneReserveWins(ctx, t, stores, 16)
}

// Throttled requests never reach DynamoDB, so retrying them keeps positions
// gapless; under throttling that does not let up, every streams call
// answers ErrUnavailable by itself (TestDynamoDBThrottling covers that for
// every method).
func TestDynamoDBStreamsThrottled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	srv := dynalite.Start(t)
	client := store.NewDynamoDBClient(testConfig(), srv.Endpoint())
	s := store.NewDynamoDB(quickerWaits(t, client), newTable(t, client))

	srv.Throttle(0.3, dynalite.Throttling)
	const workers, each = 4, 50
	got := make([][]store.Position, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				pos, err := s.NextPosition(ctx, "t", time.Hour)
				if err != nil {
					t.Errorf("NextPosition while throttled: %v", err)
					return
				}
				got[w] = append(got[w], pos)
			}
		})
	}
	wg.Wait()
	if srv.Throttled() == 0 {
		t.Fatal("the proxy throttled nothing: the test did not throttle")
	}
	var all []store.Position
	for _, g := range got {
		all = append(all, g...)
	}
	storetest.WantGapless(t, all, workers*each)
	srv.Throttle(0, "")
}

// A store that accepts connections and never answers must not hold a
// publish or a subscribe past the store's own timeouts.
func TestDynamoDBStreamsStalled(t *testing.T) {
	t.Parallel()
	endpoint := hungEndpoint(t)
	calls := methods(t, "NextPosition", "Positions", "Reserve", "History")
	var wg sync.WaitGroup
	wg.Go(func() { wantUnavailableWhenHung(t, endpoint, calls) })
	// A short deadline, on the product's client: the caller's deadline ends
	// each call, long before the store's own timeouts would.
	s := store.NewDynamoDB(store.NewDynamoDBClient(testConfig(), endpoint), "wsgateway")
	for _, c := range calls {
		wg.Go(func() {
			short, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := c.call(short, s)
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s against a stalled store with a 500ms deadline: %v", c.name, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s took %v with a 500ms deadline", c.name, d)
			}
		})
	}
	wg.Wait()
}

// methods are the calls of everyMethod with the given names.
func methods(t *testing.T, names ...string) []storeCall {
	t.Helper()
	var calls []storeCall
	for _, name := range names {
		i := slices.IndexFunc(everyMethod, func(c storeCall) bool { return c.name == name })
		if i < 0 {
			t.Fatalf("no method %q in everyMethod", name)
		}
		calls = append(calls, everyMethod[i])
	}
	return calls
}

// hungEndpoint is the endpoint of a store that accepts connections, reads
// the requests and never answers, as a blackholed route or a hung
// DynamoDB does, until the test ends.
func hungEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }() // ends when the conn is closed
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// hungAttemptTimeout stands in, against a hung endpoint, for the client's
// timeouts of an attempt (4 s for the response in the product): the
// mechanism that ends a call is the same, at a fraction of the wait.
const hungAttemptTimeout = time.Second

// wantUnavailableWhenHung makes every call at once, as the timeouts mostly
// wait, through a client whose attempts time out after hungAttemptTimeout
// against endpoint, which never answers. Each must end by itself with
// ErrUnavailable, within three timeouts: two attempts time out and the
// store gives up (maxTimeoutAttempts). The caller's deadline, five
// timeouts, must not be what ends it; eight attempts would reach it.
func wantUnavailableWhenHung(t *testing.T, endpoint string, calls []storeCall) {
	t.Helper()
	s := store.NewDynamoDB(store.NewDynamoDBClientTimingOut(testConfig(), endpoint, hungAttemptTimeout), "wsgateway")
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*hungAttemptTimeout)
			defer cancel()
			start := time.Now()
			err := c.call(ctx, s)
			took := time.Since(start)
			if !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
				t.Errorf("%s against a hung store: %v after %v, want ErrUnavailable before the deadline", c.name, err, took)
			}
			if took > 3*hungAttemptTimeout {
				t.Errorf("%s against a hung store took %v, want two attempts of %v", c.name, took, hungAttemptTimeout)
			}
		})
	}
	wg.Wait()
}

// WithConsumedCapacity reports what a publish's writes cost, and only
// those: the bench divides it by the publishes.
func TestDynamoDBConsumedCapacity(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := store.NewDynamoDBClient(testConfig(), dynalite.Start(t).Endpoint())
	var mu sync.Mutex
	units := map[string]float64{}
	calls := map[string]int{}
	s := store.NewDynamoDB(client, newTable(t, client), store.WithConsumedCapacity(func(op string, u float64) {
		mu.Lock()
		defer mu.Unlock()
		units[op] += u
		calls[op]++
	}))
	for range 3 {
		pos, err := s.NextPosition(ctx, "a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Retain(ctx, "a", pos, store.Retained{Offset: pos.Offset, Envelope: []byte(`{"m":1}`)}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Positions(ctx, []string{"a"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["NextPosition"] != 3 || calls["Retain"] != 3 || len(calls) != 2 {
		t.Errorf("reported calls %v, want NextPosition and Retain 3 times each", calls)
	}
	// A write of an item under 1 KB costs one write unit.
	if units["NextPosition"] != 3 || units["Retain"] != 3 {
		t.Errorf("reported units %v, want 3 for each", units)
	}
}
