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
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	smithytime "github.com/aws/smithy-go/time"

	"github.com/wsgateway/wsgateway/internal/assembly"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
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
// (the table is created if missing); otherwise it is in memory. The
// emulated API Gateway adds what cfg.Emulator asks of AWS's latency,
// throttle and faults.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Stack, error) {
	s := &Stack{}
	if err := s.listen(cfg); err != nil {
		return nil, err
	}
	endpoint := cfg.APIGWEndpoint
	if endpoint == "" {
		endpoint = "http://" + s.WSAddr
	}
	gw, err := assembly.New(ctx, cfg, assembly.Options{
		Log:                log,
		MemoryStore:        cfg.DynamoDBEndpoint == "",
		LocalCredentials:   true,
		ManagementEndpoint: endpoint,
	})
	if err == nil && gw.DynamoDB != nil {
		// Only the devstack creates tables: on AWS they come from deploy/.
		err = waitForTable(ctx, gw.DynamoDB, cfg, log)
		t := &localTable{client: gw.DynamoDB, cfg: cfg, log: log, ping: gw.Store.Ping}
		gw.Publisher.Ready = t.ready
	}
	if err != nil {
		s.close()
		return nil, err
	}
	s.Store, s.log = gw.Store, gw.Log

	routes := map[string]emulator.Handler{}
	for key, h := range gw.RouteTable() {
		routes[key] = emulator.Handler(h)
	}
	e := cfg.Emulator
	s.Emulator = emulator.New(emulator.Config{
		Routes: routes,
		// On AWS the ping route is a MOCK integration: no Lambda per ping.
		MockRoutes:        assembly.MockRoutes(),
		ManagementLatency: e.Latency,
		Quota:             emulator.Quota{Rate: e.Quota, Burst: e.QuotaBurst},
		Faults:            emulator.Faults{Throttle: e.Throttle, ServerError: e.ServerError, LoseDisconnect: e.LoseDisconnect, Seed: e.Seed},
		Logger:            gw.Log,
	})
	gw.Metrics.TrackConnections(func() int { return s.Emulator.Stats().Connections })

	s.publisher = gw.Publisher
	s.publisher.GRPC, s.publisher.HTTP = s.grpc, s.http
	s.publisher.Pages = web.Handler(web.Config{WebSocketURL: "ws://" + s.WSAddr + "/"})
	return s, nil
}

// StoreWait bounds how long New waits for DYNAMODB_ENDPOINT to answer:
// `npx dynalite & make run` starts both at once, and node may be the slower.
const StoreWait = 30 * time.Second

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
		if smithytime.SleepWithContext(ctx, delay) != nil {
			return fmt.Errorf("DynamoDB at DYNAMODB_ENDPOINT=%s did not answer in time (is it running?): %w", cfg.DynamoDBEndpoint, err)
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
		s.close()
		return err
	}
	s.WSAddr, s.GRPCAddr, s.HTTPAddr = s.ws.Addr().String(), s.grpc.Addr().String(), s.http.Addr().String()
	return nil
}

// close releases the listeners of a stack that will not run.
func (s *Stack) close() {
	for _, l := range []net.Listener{s.ws, s.grpc, s.http} {
		if l != nil {
			l.Close()
		}
	}
}

// Run serves until ctx is done, then stops every part gracefully.
func (s *Stack) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wsSrv := &http.Server{Handler: s.Emulator, ReadHeaderTimeout: 10 * time.Second}
	// A burst of posts leaves the management API client connections it
	// dialled and then never sent a request on; Shutdown would wait for
	// each to be five seconds old. They carry nothing, so Shutdown closes
	// them at once.
	var unused sync.Map // net.Conn → struct{}: accepted, no request read yet
	wsSrv.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			unused.Store(c, struct{}{})
		} else {
			unused.Delete(c)
		}
	}
	wsSrv.RegisterOnShutdown(func() {
		unused.Range(func(c, _ any) bool {
			c.(net.Conn).Close()
			return true
		})
	})
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
