package publisher

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wsgateway/wsgateway/internal/auth"
)

// errUnauthenticated says what is expected and nothing about which keys
// exist.
var errUnauthenticated = status.Error(codes.Unauthenticated, "missing or invalid API key: send authorization: Bearer <key>")

// requireAPIKey refuses calls without a valid "authorization: Bearer <key>".
// The REST facade forwards HTTP's Authorization header as that metadata,
// so both paths are checked here.
func requireAPIKey(keys *auth.APIKeys) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !openMethod(info.FullMethod) && !authorized(ctx, keys) {
			return nil, errUnauthenticated
		}
		return handler(ctx, req)
	}
}

// requireAPIKeyStream covers the streaming services: reflection, and
// health's Watch (which stays open).
func requireAPIKeyStream(keys *auth.APIKeys) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !openMethod(info.FullMethod) && !authorized(ss.Context(), keys) {
			return errUnauthenticated
		}
		return handler(srv, ss)
	}
}

// openMethod: health stays open so load balancers and orchestrators need
// no key.
func openMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+healthpb.Health_ServiceDesc.ServiceName+"/")
}

func authorized(ctx context.Context, keys *auth.APIKeys) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if keys.CheckAuthorization(v) {
			return true
		}
	}
	return false
}
