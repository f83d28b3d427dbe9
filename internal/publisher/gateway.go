package publisher

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wsgateway/wsgateway/gen"
	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/auth"
)

// requestIDHeader is RequestIDKey's HTTP header.
const requestIDHeader = "X-Request-Id"

// dialGRPC connects the REST facade to the gRPC server at addr. The facade
// goes through the gRPC port rather than calling the service in-process
// (RegisterPublisherServiceHandlerServer) because the in-process path skips
// interceptors: REST must get the same logging, validation and auth.
func dialGRPC(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial gRPC %s: %w", addr, err)
	}
	return conn, nil
}

// grpc-gateway's query parameter parser is one per process, whatever mux
// the option is given to: set it once, before any gateway serves, rather
// than in newGateway, where two gateways built at once would race on it.
func init() {
	runtime.NewServeMux(runtime.SetQueryParameterParser(&queryParser{}))
}

// newGateway returns the REST facade (/v1/...) forwarding to conn. With
// apiKeys, a caller without one of them is refused before its body is
// read; the gRPC server checks the key again, as for any call.
func newGateway(ctx context.Context, conn *grpc.ClientConn, apiKeys []string) (http.Handler, error) {
	mux := runtime.NewServeMux(
		// The contract: lowerCamelCase JSON with zero counts emitted.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, restJSON{&runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true},
		}}),
		runtime.WithErrorHandler(handleRESTError),
		// The request id travels as X-Request-Id over HTTP and as
		// x-request-id metadata over gRPC, both ways.
		runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
			if textproto.CanonicalMIMEHeaderKey(key) == requestIDHeader {
				return RequestIDKey, true
			}
			return runtime.DefaultHeaderMatcher(key)
		}),
		runtime.WithOutgoingHeaderMatcher(func(key string) (string, bool) {
			if key == RequestIDKey {
				return requestIDHeader, true
			}
			return runtime.MetadataHeaderPrefix + key, true // the gateway's default
		}),
	)
	if err := wsgatewayv1.RegisterPublisherServiceHandler(ctx, mux, conn); err != nil {
		return nil, fmt.Errorf("register REST facade: %w", err)
	}
	if err := allowedMethods(mux, gen.OpenAPI); err != nil {
		return nil, err
	}
	var keys *auth.APIKeys
	if len(apiKeys) > 0 {
		keys = auth.NewAPIKeys(apiKeys)
	}
	return guardREST(mux, keys), nil
}
