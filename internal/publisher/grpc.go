package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/auth"
)

// newGRPCServer returns a gRPC server with cfg.Service, grpc.health.v1
// (reported through hs) and server reflection registered. Every call,
// including the ones the REST facade forwards, passes the same
// interceptors: it gets a request id, is authenticated (when cfg.APIKeys is
// set), measured (when cfg.Metrics is set) and logged.
func newGRPCServer(cfg Config, hs *health.Server) *grpc.Server {
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
	callTimeout := cfg.CallTimeout
	if callTimeout <= 0 {
		callTimeout = DefaultCallTimeout
	}
	unary = append(unary, limitRequestSize(), limitCallTime(callTimeout))
	// Innermost, so that a panic is measured and logged as the Internal
	// error it turns into.
	unary = append(unary, recoverPanics(log))
	s := grpc.NewServer(
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(maxGRPCReceiveBytes),
	)
	wsgatewayv1.RegisterPublisherServiceServer(s, cfg.Service)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	if cfg.Metrics != nil {
		cfg.Metrics.InitializeGRPC(s)
	}
	return s
}

// logCalls logs one line per call, with its request id (log's handler is a
// wrapped with RequestIDField). Payloads are never logged: they are the backends'
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
		// Whom a user call is about: the line to find when a user asks
		// why they were signed out.
		if u, ok := req.(interface{ GetUserId() string }); ok && u.GetUserId() != "" {
			attrs = append(attrs, slog.String("user_id", u.GetUserId()))
		}
		if c, ok := req.(interface{ GetConnectionId() string }); ok && c.GetConnectionId() != "" {
			attrs = append(attrs, slog.String("connection_id", c.GetConnectionId()))
		}
		switch r := resp.(type) {
		case *wsgatewayv1.PublishResponse:
			attrs = append(attrs, slog.Int("delivered", int(r.GetDelivered())),
				slog.Int("gone", int(r.GetGone())), slog.Int("failed", int(r.GetFailed())),
				slog.Uint64("offset", r.GetOffset()), slog.Bool("duplicate", r.GetDuplicate()))
		case *wsgatewayv1.SendToUserResponse:
			attrs = append(attrs, slog.Int("delivered", int(r.GetDelivered())),
				slog.Int("gone", int(r.GetGone())), slog.Int("failed", int(r.GetFailed())),
				slog.Bool("duplicate", r.GetDuplicate()))
		case *wsgatewayv1.DisconnectResponse:
			attrs = append(attrs, slog.Int("disconnected", int(r.GetDisconnected())))
		case *wsgatewayv1.BroadcastResponse:
			attrs = append(attrs, slog.Int("topics", len(r.GetResults())))
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

// limitRequestSize refuses a request over MaxGRPCRequestBytes with
// InvalidArgument. grpc-go's own receive limit cannot do it: it answers
// ResourceExhausted (429 on REST: "retry later"), and it writes that status
// while reading the message, before any interceptor or handler runs, so no
// code of ours can change it. Its limit is therefore set higher
// (maxGRPCReceiveBytes) and this one is the limit callers meet.
func limitRequestSize() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if m, ok := req.(proto.Message); ok && proto.Size(m) > MaxGRPCRequestBytes {
			return nil, toStatus(fmt.Errorf("%w: the request is larger than the limit of %d bytes", errRequestTooLarge, MaxGRPCRequestBytes))
		}
		return handler(ctx, req)
	}
}

// limitCallTime makes d the deadline of every call whose caller set none
// or a later one, so that a stalled store cannot pin a call (and what it
// holds) for as long as it stalls. A caller's shorter deadline stands:
// WithTimeout never extends its parent's.
func limitCallTime(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, cancel := context.WithTimeoutCause(ctx, d, errCallTimeout)
		defer cancel()
		resp, err := handler(ctx, req)
		// The cause tells our deadline from the caller's, whose expiry
		// the caller already sees as its own DeadlineExceeded.
		if err != nil && errors.Is(context.Cause(ctx), errCallTimeout) {
			return nil, toStatus(fmt.Errorf("%w (%s)", errCallTimeout, d))
		}
		return resp, err
	}
}
