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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	st, err := openStore(ctx, cfg, awsCfg)
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
		Ready:   st.Ping,
		Metrics: m,
		APIKeys: cfg.APIKeys,
		Pages:   web.Handler(web.Config{WebSocketURL: "ws://" + s.WSAddr + "/"}),
		Log:     log,
	}
	return s, nil
}

func openStore(ctx context.Context, cfg config.Config, awsCfg aws.Config) (store.Store, error) {
	if cfg.DynamoDBEndpoint == "" {
		return store.NewMemory(), nil
	}
	client := store.NewDynamoDBClient(awsCfg, cfg.DynamoDBEndpoint)
	if err := store.EnsureTable(ctx, client, cfg.TableName); err != nil {
		return nil, fmt.Errorf("table %s at %s: %w", cfg.TableName, cfg.DynamoDBEndpoint, err)
	}
	return store.NewDynamoDB(client, cfg.TableName), nil
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
