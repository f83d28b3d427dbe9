// Package apigw posts to WebSocket connections through API Gateway's
// management API (@connections) with the real aws-sdk-go-v2 client, and turns
// its typed errors into the sentinels the fan-out branches on.
//
// PostToConnection, called once per subscriber of every publish, runs the
// SDK client's parts as a fixed pipeline rather than its per-call middleware
// stack (post.go): the same signed request for a quarter of the CPU.
package apigw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Outcomes of a management call other than success.
var (
	ErrGone      = errors.New("connection gone")             // 410 GoneException
	ErrThrottled = errors.New("throttled")                   // 429 LimitExceededException: rate limit or the client's buffer is full
	ErrTooLarge  = errors.New("payload too large")           // 413 PayloadTooLargeException
	ErrForbidden = errors.New("forbidden")                   // 403 ForbiddenException: credentials or IAM
	ErrServer    = errors.New("management API server error") // 5xx
	// ErrUnreachable: no HTTP response came back (dial, TLS, connection
	// reset), so the message may or may not have arrived. A call whose
	// context ended returns the context's error instead.
	ErrUnreachable = errors.New("management API unreachable")
)

// MaxIdleConnsPerHost is how many keep-alive connections the client keeps
// to the endpoint. The SDK's default of 10 would make every concurrent post
// past the tenth dial (and TLS-handshake) anew; this covers the fan-out's
// largest concurrency, so that posts reuse connections.
const MaxIdleConnsPerHost = 1024

// Client calls the management API of one WebSocket API stage.
type Client struct {
	api  *apigatewaymanagementapi.Client
	post poster // PostToConnection's fixed pipeline
}

// New returns a client for endpoint, the stage's management API base URL:
// https://{api-id}.execute-api.{region}.amazonaws.com/{stage} on AWS, or the
// devstack emulator's http://127.0.0.1:8080. Requests are SigV4-signed with
// cfg's credentials and region.
//
// The SDK's retries are off: the caller (the fan-out) knows the publish
// deadline and the whole batch, so it alone decides what to retry and when.
func New(cfg aws.Config, endpoint string) *Client {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = MaxIdleConnsPerHost
		t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
		t.IdleConnTimeout = 90 * time.Second
		// The answers are empty or a few bytes of JSON: asking for gzip
		// only adds a header for both ends to write and parse.
		t.DisableCompression = true
	})
	resolver := resolveOnce(cfg.Region, endpoint)
	api := apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.HTTPClient = httpClient
		o.Retryer = aws.NopRetryer{}
		o.EndpointResolverV2 = resolver
	})
	return &Client{api: api, post: newPoster(api, resolver, httpClient)}
}

// resolveOnce resolves the endpoint with the SDK's own rules once, instead
// of on every call: the rules engine and the URL parse it runs cost as much
// as signing. Should the rules refuse the endpoint, every call says so.
func resolveOnce(region, endpoint string) apigatewaymanagementapi.EndpointResolverV2 {
	rules := apigatewaymanagementapi.NewDefaultEndpointResolverV2()
	e, err := rules.ResolveEndpoint(context.Background(), apigatewaymanagementapi.EndpointParameters{
		Region:       aws.String(region),
		Endpoint:     aws.String(endpoint),
		UseDualStack: aws.Bool(false),
		UseFIPS:      aws.Bool(false),
	})
	if err != nil {
		return rules
	}
	return resolved(e)
}

// resolved is an endpoint the rules have resolved.
type resolved smithyendpoints.Endpoint

func (e resolved) ResolveEndpoint(context.Context, apigatewaymanagementapi.EndpointParameters) (smithyendpoints.Endpoint, error) {
	return smithyendpoints.Endpoint(e), nil
}

// PostToConnection sends data as one WebSocket message to the connection.
func (c *Client) PostToConnection(ctx context.Context, connectionID string, data []byte) error {
	return classify(c.post.postToConnection(ctx, connectionID, data))
}

// DeleteConnection closes the connection. A connection that is already gone
// yields ErrGone.
func (c *Client) DeleteConnection(ctx context.Context, connectionID string) error {
	_, err := c.api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{
		ConnectionId: aws.String(connectionID),
	})
	return classify(err)
}

// classify wraps err with the sentinel for its kind, keeping the SDK error
// (operation, status, request id) in the chain for logs. The typed errors
// come from the x-amzn-ErrorType header; the status code is the fallback for
// answers that carry none, such as a 502 from a load balancer.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		gone      *types.GoneException
		limit     *types.LimitExceededException
		tooLarge  *types.PayloadTooLargeException
		forbidden *types.ForbiddenException
		resp      *smithyhttp.ResponseError
		send      *smithyhttp.RequestSendError
	)
	switch {
	case errors.As(err, &gone):
		return fmt.Errorf("%w: %w", ErrGone, err)
	case errors.As(err, &limit):
		return fmt.Errorf("%w: %w", ErrThrottled, err)
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.As(err, &forbidden):
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	case errors.As(err, &resp) && resp.HTTPStatusCode() == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %w", ErrThrottled, err)
	case errors.As(err, &resp) && resp.HTTPStatusCode() >= 500:
		return fmt.Errorf("%w: %w", ErrServer, err)
	case errors.As(err, &send):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}
