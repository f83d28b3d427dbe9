package publisher

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/auth"
)

// NewGRPCServer returns a gRPC server with cfg.Service, grpc.health.v1
// (reported through hs) and server reflection registered. Every call,
// including the ones the REST facade forwards, passes the same
// interceptors: it gets a request id, is authenticated (when cfg.APIKeys is
// set), measured (when cfg.Metrics is set) and logged.
func NewGRPCServer(cfg Config, hs *health.Server) *grpc.Server {
	log := slog.New(NewRequestIDHandler(cfg.Log.Handler()))
	unary := []grpc.UnaryServerInterceptor{assignRequestIDs()}
	if cfg.Metrics != nil {
		unary = append(unary, cfg.Metrics.UnaryServerInterceptor())
	}
	// Refused calls are measured and logged too: they are how a leaked or
	// rotated key shows up.
	unary = append(unary, logCalls(log))
	var stream []grpc.StreamServerInterceptor
	if len(cfg.APIKeys) > 0 {
		keys := auth.NewAPIKeys(cfg.APIKeys)
		unary = append(unary, requireAPIKey(keys))
		stream = append(stream, requireAPIKeyStream(keys))
	}
	// Innermost, so that a panic is measured and logged as the Internal
	// error it turns into.
	unary = append(unary, recoverPanics(log))
	s := grpc.NewServer(grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
	wsgatewayv1.RegisterPublisherServiceServer(s, cfg.Service)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	if cfg.Metrics != nil {
		cfg.Metrics.InitializeGRPC(s)
	}
	return s
}

// logCalls logs one line per call, with its request id (log's handler is a
// RequestIDHandler). Payloads are never logged: they are the backends'
// data, not ours.
func logCalls(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == healthpb.Health_Check_FullMethodName {
			return handler(ctx, req) // load balancers poll this constantly
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		attrs := []slog.Attr{
			slog.String("method", info.FullMethod),
			slog.String("code", status.Code(err).String()),
			slog.Duration("duration", time.Since(start)),
		}
		if t, ok := req.(interface{ GetTopic() string }); ok {
			attrs = append(attrs, slog.String("topic", t.GetTopic()))
		}
		if r, ok := resp.(*wsgatewayv1.PublishResponse); ok {
			attrs = append(attrs, slog.Int("delivered", int(r.GetDelivered())),
				slog.Int("gone", int(r.GetGone())), slog.Int("failed", int(r.GetFailed())))
		}
		level := slog.LevelInfo
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.NotFound, codes.Unauthenticated, codes.PermissionDenied, codes.Canceled:
		default:
			level = slog.LevelError
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		log.LogAttrs(ctx, level, "rpc", attrs...)
		return resp, err
	}
}

// recoverPanics turns a handler panic into Internal for that one call
// instead of a crash of every in-flight publish.
func recoverPanics(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}
