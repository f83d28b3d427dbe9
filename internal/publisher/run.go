package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wsgateway/wsgateway/gen"
	"github.com/wsgateway/wsgateway/internal/metrics"
	"github.com/wsgateway/wsgateway/internal/store"
)

// DefaultDrainTimeout bounds graceful stop: in-flight publishes get this
// long to finish after SIGTERM before connections are cut.
const DefaultDrainTimeout = 20 * time.Second

// DefaultCallTimeout is CALL_TIMEOUT's default.
const DefaultCallTimeout = 10 * time.Second

// Config is what Run serves.
type Config struct {
	GRPC, HTTP net.Listener
	Service    *Service
	// Ready reports whether the store is reachable, for /readyz.
	Ready func(context.Context) error
	// APIKeys (API_KEYS), if any, are required from every caller but
	// health checks; none turns publisher auth off.
	APIKeys []string
	// Metrics, if set, measures every gRPC call and is served at
	// /metrics. The fan-out reports into it on its own (fanout.Options).
	Metrics *metrics.Metrics
	// Pages, if set, serves everything on the HTTP listener that is not
	// /v1/, /healthz, /readyz, /metrics or /openapi.json (the devstack's
	// demo page).
	Pages        http.Handler
	Log          *slog.Logger
	DrainTimeout time.Duration
	// CallTimeout (CALL_TIMEOUT) is the deadline of a call whose caller
	// set none; 0 means DefaultCallTimeout.
	CallTimeout time.Duration
}

// Run serves the gRPC API on cfg.GRPC and the REST facade, health and
// metrics on cfg.HTTP until ctx is done, then stops gracefully: health turns
// NOT_SERVING, new calls are refused, in-flight ones get DrainTimeout.
func Run(ctx context.Context, cfg Config) error {
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	hs := health.NewServer()
	if len(cfg.APIKeys) == 0 {
		cfg.Log.Warn("PUBLISHER AUTH IS OFF: API_KEYS is unset, so anyone who can reach the gRPC and HTTP ports may publish to any topic")
	}
	grpcSrv := newGRPCServer(cfg, hs)

	conn, err := dialGRPC(cfg.GRPC.Addr().String())
	if err != nil {
		return err
	}
	defer conn.Close()
	gw, err := newGateway(ctx, conn, cfg.APIKeys)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		Handler:           routes(gw, cfg),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}

	errc := make(chan error, 2)
	go func() { errc <- serveGRPC(grpcSrv, cfg.GRPC) }()
	go func() { errc <- serveHTTP(httpSrv, cfg.HTTP) }()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	cfg.Log.Info("publisher listening", "grpc", cfg.GRPC.Addr().String(), "http", cfg.HTTP.Addr().String())

	select {
	case err = <-errc: // a listener failed: stop the other one too
	case <-ctx.Done():
	}
	hs.Shutdown()
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainTimeout)
	defer cancel()
	// HTTP first: its in-flight requests are gRPC calls that must still be
	// able to complete.
	if herr := httpSrv.Shutdown(drainCtx); herr != nil {
		httpSrv.Close()
	}
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-drainCtx.Done():
		cfg.Log.Warn("drain timeout: cutting in-flight calls", "timeout", cfg.DrainTimeout)
		grpcSrv.Stop()
		<-stopped
	}
	return err
}

func serveGRPC(s interface{ Serve(net.Listener) error }, lis net.Listener) error {
	if err := s.Serve(lis); err != nil {
		return fmt.Errorf("serve gRPC: %w", err)
	}
	return nil
}

func serveHTTP(s *http.Server, lis net.Listener) error {
	if err := s.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP: %w", err)
	}
	return nil
}

func routes(gw http.Handler, cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(gen.OpenAPI)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if cfg.Ready != nil {
			if err := cfg.Ready(ctx); err != nil {
				// A missing table is a fault to fix, not an outage to wait out.
				msg := "store unreachable"
				if errors.Is(err, store.ErrTableNotFound) {
					msg = "table not found"
				}
				cfg.Log.WarnContext(ctx, "not ready: "+msg, "err", err)
				http.Error(w, msg, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics.Handler())
	}
	if cfg.Pages != nil {
		mux.Handle("/", cfg.Pages)
	}
	return mux
}
