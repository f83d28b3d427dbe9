package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	runtimepprof "runtime/pprof"
	"time"

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
)

// StackConfig is the stack a child process serves (see ServeStack): the
// emulator's model of AWS, the store, and whether the publisher runs in it.
type StackConfig struct {
	Latency time.Duration  // added to every management call
	Quota   emulator.Quota // the account's throttle; zero: none
	// DynamoDB, when set, is the endpoint of the store's DynamoDB (and
	// Table its table); otherwise the store is in memory.
	DynamoDB, Table string
	// Publisher serves the publisher service too, as the devstack does.
	Publisher bool
	// References serves two more publisher services, which post with
	// plain net/http (plainPoster) and with the SDK client as NewFromConfig
	// makes it (naivePoster): references on the same stack, not the
	// product.
	References bool
	// PProf serves net/http/pprof on a loopback port, to profile the
	// stack.
	PProf bool
}

// StackAddrs is what a serving stack reports, as one JSON line.
type StackAddrs struct {
	WS    string `json:"ws"`              // host:port of the WebSocket and management API
	GRPC  string `json:"grpc,omitempty"`  // the publisher's gRPC
	HTTP  string `json:"http,omitempty"`  // the publisher's REST facade
	PProf string `json:"pprof,omitempty"` // see pprofMux
	// The reference publishers' gRPC.
	PlainGRPC string `json:"plain_grpc,omitempty"`
	NaiveGRPC string `json:"naive_grpc,omitempty"`
}

// ServeStack is the devstack's wiring on loopback ports, for a benchmark's
// child process: the emulated API Gateway calling the real handlers, the
// store, and, with cfg.Publisher, the publisher service whose fan-out
// reaches the emulator through the real SDK client over HTTP. It writes its
// addresses to ready as one JSON line, then serves until ctx ends.
func ServeStack(ctx context.Context, cfg StackConfig, ready io.Writer) error {
	awsCfg, err := config.Config{Region: "us-east-1"}.AWS(ctx, true)
	if err != nil {
		return err
	}
	// Warnings (posts that failed for good) go to stderr, which the
	// benchmark keeps to explain a failure.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var st store.Store = store.NewMemory()
	if cfg.DynamoDB != "" {
		client := store.NewDynamoDBClient(awsCfg, cfg.DynamoDB)
		if err := store.EnsureTable(ctx, client, cfg.Table); err != nil {
			return err
		}
		st = store.NewDynamoDB(client, cfg.Table)
	}
	routes := handler.NewRoutes(st, log)
	emu := emulator.New(emulator.Config{
		Routes: map[string]emulator.Handler{
			emulator.RouteConnect:     routes.Connect,
			emulator.RouteDisconnect:  routes.Disconnect,
			emulator.RouteDefault:     routes.Default,
			wsproto.ActionSubscribe:   routes.Subscribe,
			wsproto.ActionUnsubscribe: routes.Unsubscribe,
		},
		MockRoutes:        map[string]string{wsproto.ActionPing: string(wsproto.PongFrame())},
		ManagementLatency: cfg.Latency,
		Quota:             cfg.Quota,
		Logger:            log,
	})

	wsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addrs := StackAddrs{WS: wsLis.Addr().String()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	wsSrv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer cancel()
		errc <- ignoreClosed(wsSrv.Serve(wsLis))
	}()

	running := 1 // goroutines that will send on errc
	serve := func(poster fanout.Poster) (grpcAddr, httpAddr string, err error) {
		grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		httpLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", errors.Join(err, grpcLis.Close())
		}
		// Exactly as services/publisher wires it, metrics included.
		m := metrics.New(prometheus.NewRegistry())
		fan := fanout.New(st, m.WrapPoster(poster), fanout.Options{Logger: log, Observer: m})
		running++
		go func() {
			defer cancel()
			errc <- publisher.Run(ctx, publisher.Config{
				GRPC:    grpcLis,
				HTTP:    httpLis,
				Service: publisher.NewService(fan, st),
				Ready:   st.Ping,
				Metrics: m,
				Log:     log,
			})
		}()
		return grpcLis.Addr().String(), httpLis.Addr().String(), nil
	}
	if cfg.Publisher {
		addrs.GRPC, addrs.HTTP, err = serve(apigw.New(awsCfg, "http://"+addrs.WS))
	}
	if cfg.References && err == nil {
		addrs.PlainGRPC, _, err = serve(newPlainPoster("http://" + addrs.WS))
	}
	if cfg.References && err == nil {
		addrs.NaiveGRPC, _, err = serve(newNaivePoster(awsCfg, "http://"+addrs.WS))
	}
	if err != nil {
		cancel()
	}
	if cfg.PProf {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cancel()
			return errors.Join(err, <-errc)
		}
		addrs.PProf = lis.Addr().String()
		pp := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = pp.Serve(lis) }()
		defer pp.Close()
	}

	if err == nil {
		if err = json.NewEncoder(ready).Encode(addrs); err != nil {
			cancel()
		}
	}
	<-ctx.Done()
	emu.Close()
	shut, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	wsSrv.Shutdown(shut)
	for range running {
		err = errors.Join(err, <-errc)
	}
	return err
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve: %w", err)
}

// pprofMux serves net/http/pprof; /profile/start and /profile/stop, which
// bracket a CPU profile so that it covers exactly what the benchmark
// measures; and /gc.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	var profile bytes.Buffer
	mux.HandleFunc("POST /profile/start", func(w http.ResponseWriter, r *http.Request) {
		profile.Reset()
		if err := runtimepprof.StartCPUProfile(&profile); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
	mux.HandleFunc("POST /profile/stop", func(w http.ResponseWriter, r *http.Request) {
		runtimepprof.StopCPUProfile()
		w.Write(profile.Bytes())
	})
	// What a connection costs at rest: garbage collected, freed memory
	// returned to the OS.
	mux.HandleFunc("POST /gc", func(w http.ResponseWriter, r *http.Request) { debug.FreeOSMemory() })
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
