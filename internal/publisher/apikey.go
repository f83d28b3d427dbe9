package publisher

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/wsgateway/wsgateway/internal/auth"
)

// errUnauthenticated says what is expected and nothing about which keys
// exist.
var errUnauthenticated = status.Error(codes.Unauthenticated, "missing or invalid API key: send one authorization: Bearer <key>")

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

// requireAPIKeyStream covers the streaming services, today only the open
// ones (reflection, health's Watch), so that a service added later is not
// open by accident.
func requireAPIKeyStream(keys *auth.APIKeys) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !openMethod(info.FullMethod) && !authorized(ss.Context(), keys) {
			return errUnauthenticated
		}
		return handler(srv, ss)
	}
}

// openMethod: health stays open so load balancers and orchestrators need
// no key. Reflection stays open too: it reveals only the schema, which is
// public anyway (the protos, /openapi.json), and grpcurl needs it to
// resolve any method, including the documented health check.
func openMethod(fullMethod string) bool {
	for _, svc := range []string{
		healthpb.Health_ServiceDesc.ServiceName,
		reflectionpb.ServerReflection_ServiceDesc.ServiceName,
		reflectionv1alphapb.ServerReflection_ServiceDesc.ServiceName,
	} {
		if strings.HasPrefix(fullMethod, "/"+svc+"/") {
			return true
		}
	}
	return false
}

func authorized(ctx context.Context, keys *auth.APIKeys) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return authorizedValues(md.Get("authorization"), keys)
}

// authorizedValues accepts exactly one credential. With two, a valid key
// must not vouch for whatever the other one is (a proxy's, an attacker's
// appended header): the request is ambiguous and refused.
func authorizedValues(values []string, keys *auth.APIKeys) bool {
	return len(values) == 1 && keys.CheckAuthorization(values[0])
}
