// Package devstack runs every part of wsgateway in one process: an emulated
// API Gateway WebSocket API calling the Lambda handler functions in-process,
// the publisher service, and a store. The publisher reaches the emulator the
// way it reaches AWS: through the real management API client over HTTP.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/handler"
	"github.com/wsgateway/wsgateway/internal/metrics"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
	"github.com/wsgateway/wsgateway/web"
)

// Stack is a devstack whose listeners are bound; Run serves it.
type Stack struct {
	// Addresses actually bound (useful when the config asked for port 0).
	WSAddr, GRPCAddr, HTTPAddr string
	// Emulator is exposed for tests that drop connections server-side.
	Emulator *emulator.Emulator
	Store    store.Store

	ws, grpc, http net.Listener
	publisher      publisher.Config
	log            *slog.Logger
}

// New binds the three listeners and wires the parts; nothing is served
// until Run. With cfg.DynamoDBEndpoint set, the store is DynamoDB there
// (the table is created if missing); otherwise it is in memory.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Stack, error) {
	awsCfg, err := cfg.AWS(ctx, true)
	if err != nil {
		return nil, err
	}
	st, ready, err := openStore(ctx, cfg, awsCfg, log)
	if err != nil {
		return nil, err
	}

	// Every line logged during a gRPC or REST call carries its request id.
	log = slog.New(publisher.NewRequestIDHandler(log.Handler()))
	s := &Stack{Store: st, log: log}
	if err := s.listen(cfg); err != nil {
		return nil, err
	}

	routes := handler.NewRoutes(st, log)
	routes.Configure(cfg)
	s.Emulator = emulator.New(emulator.Config{
		Routes: map[string]emulator.Handler{
			"$connect":                routes.Connect,
			"$disconnect":             routes.Disconnect,
			"$default":                routes.Default,
			wsproto.ActionSubscribe:   routes.Subscribe,
			wsproto.ActionUnsubscribe: routes.Unsubscribe,
		},
		// On AWS the ping route is a MOCK integration: no Lambda per ping.
		MockRoutes: map[string]string{wsproto.ActionPing: string(wsproto.PongFrame())},
		Logger:     log,
	})

	endpoint := cfg.APIGWEndpoint
	if endpoint == "" {
		endpoint = "http://" + s.WSAddr
	}
	m := metrics.New(prometheus.NewRegistry())
	m.TrackConnections(func() int { return s.Emulator.Stats().Connections })
	fan := fanout.New(st, m.WrapPoster(apigw.New(awsCfg, endpoint)), fanout.Options{Logger: log, Observer: m})
	s.publisher = publisher.Config{
		GRPC:    s.grpc,
		HTTP:    s.http,
		Service: publisher.NewService(fan, st),
		Ready:   ready,
		Metrics: m,
		APIKeys: cfg.APIKeys,
		Pages:   web.Handler(web.Config{WebSocketURL: "ws://" + s.WSAddr + "/"}),
		Log:     log,
		// CallTimeout is validated by config.Load, never 0 here.
		CallTimeout: cfg.CallTimeout,
	}
	return s, nil
}

// StoreWait bounds how long New waits for DYNAMODB_ENDPOINT to answer:
// `npx dynalite & make run` starts both at once, and node may be the slower.
const StoreWait = 30 * time.Second

// openStore returns the store and its readiness check. A DynamoDB store
// gets its table created if missing, after waiting (logged, bounded by
// StoreWait) for an endpoint that is not up yet; its readiness check
// re-creates the table if it disappears, as it does when an in-memory
// dynalite restarts. Only the devstack creates tables: on AWS they come
// from deploy/.
func openStore(ctx context.Context, cfg config.Config, awsCfg aws.Config, log *slog.Logger) (store.Store, func(context.Context) error, error) {
	if cfg.DynamoDBEndpoint == "" {
		st := store.NewMemory()
		return st, st.Ping, nil
	}
	client := store.NewDynamoDBClient(awsCfg, cfg.DynamoDBEndpoint)
	if err := waitForTable(ctx, client, cfg, log); err != nil {
		return nil, nil, err
	}
	st := store.NewDynamoDB(client, cfg.TableName)
	t := &localTable{client: client, cfg: cfg, log: log, ping: st.Ping}
	return st, t.ready, nil
}

// waitForTable runs EnsureTable until it succeeds, retrying while the
// endpoint is unreachable (ErrUnavailable) for up to StoreWait.
func waitForTable(ctx context.Context, client *dynamodb.Client, cfg config.Config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, StoreWait)
	defer cancel()
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := store.EnsureTable(ctx, client, cfg.TableName)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("DynamoDB at DYNAMODB_ENDPOINT=%s did not answer in time (is it running?): %w", cfg.DynamoDBEndpoint, err)
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return fmt.Errorf("table %s at %s: %w", cfg.TableName, cfg.DynamoDBEndpoint, err)
		}
		log.Warn("waiting for DynamoDB at DYNAMODB_ENDPOINT", "endpoint", cfg.DynamoDBEndpoint, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("DynamoDB at DYNAMODB_ENDPOINT=%s did not answer in time (is it running?): %w", cfg.DynamoDBEndpoint, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// localTable is the devstack's own table, which it re-creates when it
// disappears.
type localTable struct {
	client *dynamodb.Client
	cfg    config.Config
	log    *slog.Logger
	ping   func(context.Context) error

	creating atomic.Bool
}

// ready is /readyz's check: a missing table reports "table not found" and
// starts re-creating the table in the background, so the stack recovers
// by itself instead of staying unready; the probe's short deadline would
// cut a creation short.
func (t *localTable) ready(ctx context.Context) error {
	err := t.ping(ctx)
	if errors.Is(err, store.ErrTableNotFound) && t.creating.CompareAndSwap(false, true) {
		t.log.Warn("the table has gone (DynamoDB restarted?): creating it again", "table", t.cfg.TableName)
		go func() {
			defer t.creating.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), StoreWait)
			defer cancel()
			if err := store.EnsureTable(ctx, t.client, t.cfg.TableName); err != nil {
				t.log.Error("could not create the table again", "table", t.cfg.TableName, "err", err)
				return
			}
			t.log.Info("table created again", "table", t.cfg.TableName)
		}()
	}
	return err
}

func (s *Stack) listen(cfg config.Config) error {
	var err error
	bind := func(addr string) net.Listener {
		if err != nil {
			return nil
		}
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err != nil {
			err = fmt.Errorf("listen on %s: %w", addr, err)
		}
		return l
	}
	s.ws, s.grpc, s.http = bind(cfg.WSAddr), bind(cfg.GRPCAddr), bind(cfg.HTTPAddr)
	if err != nil {
		for _, l := range []net.Listener{s.ws, s.grpc, s.http} {
			if l != nil {
				l.Close()
			}
		}
		return err
	}
	s.WSAddr, s.GRPCAddr, s.HTTPAddr = s.ws.Addr().String(), s.grpc.Addr().String(), s.http.Addr().String()
	return nil
}

// Run serves until ctx is done, then stops every part gracefully.
func (s *Stack) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wsSrv := &http.Server{Handler: s.Emulator, ReadHeaderTimeout: 10 * time.Second}
	wsErr := make(chan error, 1)
	go func() {
		defer cancel() // without the WebSocket API the stack is useless
		if err := wsSrv.Serve(s.ws); err != nil && !errors.Is(err, http.ErrServerClosed) {
			wsErr <- fmt.Errorf("serve WebSocket API: %w", err)
		}
		close(wsErr)
	}()

	pubErr := publisher.Run(ctx, s.publisher)

	// Close sockets first so every connection gets its $disconnect while
	// the store is still there.
	s.Emulator.Close()
	shutCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	wsSrv.Shutdown(shutCtx)
	return errors.Join(pubErr, <-wsErr)
}
