// Package assembly builds wsgateway from its validated settings: the
// store, the metrics, the management API client, the fan-out, the
// WebSocket route handlers and their route table, the publish Lambda's
// handler and the publisher service. The publisher container, every
// Lambda, the devstack and the bench all start from New, so what runs
// locally and what the bench measures is what ships.
package assembly

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/handler"
	"github.com/wsgateway/wsgateway/internal/logctx"
	"github.com/wsgateway/wsgateway/internal/metrics"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Options are what the settings do not say: how the binary runs.
type Options struct {
	// Log receives every part's lines (slog.Default() when nil); New tags
	// them with the ids of the call they are logged in (see Logger).
	Log *slog.Logger
	// MemoryStore keeps connections and subscriptions in memory (the
	// devstack without DYNAMODB_ENDPOINT) instead of in DynamoDB at
	// cfg.DynamoDBEndpoint, or AWS's when that is empty.
	MemoryStore bool
	// LocalCredentials signs every AWS call with fixed dummies: the
	// devstack's emulators accept any signature, and real keys must never
	// reach them.
	LocalCredentials bool
	// ManagementEndpoint, when set, replaces cfg.APIGWEndpoint: the
	// devstack's emulated API Gateway, whose address is known only once
	// its listener is bound.
	ManagementEndpoint string
	// Store, when set, is the store as it is, for a publisher beside a
	// running stack, over that stack's store: the bench's reference
	// publishers.
	Store store.Store
	// NewPoster, when set, makes what the fan-out posts with instead of
	// the management API client: the bench's reference publishers, which
	// measure other ways of posting against it on the same stack.
	NewPoster func(cfg aws.Config, endpoint string) fanout.Poster
}

// Gateway is wsgateway, built; each binary serves the parts it runs.
type Gateway struct {
	AWS aws.Config
	Log *slog.Logger
	// Store holds connections and subscriptions; DynamoDB is its client,
	// nil unless the store is DynamoDB (the devstack creates its table
	// with it).
	Store    store.Store
	DynamoDB *dynamodb.Client
	// Metrics measures the fan-out's management calls and, once the
	// publisher serves it, every gRPC call.
	Metrics *metrics.Metrics
	Fanout  *fanout.Fanout
	// Publish is the publish Lambda's handler.
	Publish *handler.Publish
	// clientPublish answers the publish route (a browser publishing),
	// built with the routes, whose grants and deadline it shares.
	clientPublish func() *handler.ClientPublish
	// routes is built on first use: only the binaries that serve the
	// WebSocket routes should warn that connect auth is off.
	routes func() *handler.Routes
	// Publisher is the publisher service's configuration but its
	// listeners (GRPC, HTTP), which the caller binds, and the devstack's
	// demo pages.
	Publisher publisher.Config
}

// New builds wsgateway from cfg, which config.Load has validated. Nothing
// is dialled: the first call to the store or the management API does.
func New(ctx context.Context, cfg config.Config, opts Options) (*Gateway, error) {
	awsCfg, err := cfg.AWS(ctx, opts.LocalCredentials)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{AWS: awsCfg, Log: Logger(log.Handler())}
	switch {
	case opts.Store != nil:
		g.Store = opts.Store
	case opts.MemoryStore:
		g.Store = store.NewMemory()
	default:
		g.DynamoDB = store.NewDynamoDBClient(awsCfg, cfg.DynamoDBEndpoint)
		g.Store = store.NewDynamoDB(g.DynamoDB, cfg.TableName)
	}

	endpoint := cfg.APIGWEndpoint
	if opts.ManagementEndpoint != "" {
		endpoint = opts.ManagementEndpoint
	}
	client := apigw.New(awsCfg, endpoint)
	var poster fanout.Poster = client
	if opts.NewPoster != nil {
		poster = opts.NewPoster(awsCfg, endpoint)
	}
	g.Metrics = metrics.New(prometheus.NewRegistry())
	mgmt := g.Metrics.WrapPoster(poster)
	g.Fanout = fanout.New(g.Store, mgmt, fanout.Options{
		Logger: g.Log, Observer: g.Metrics,
		// Every message takes its topic's next position in the store and
		// is kept there HISTORY_TTL for recovery and History, beside the
		// idempotency keys of publishes.
		Streams: g.Store, HistoryTTL: cfg.HistoryTTL,
		// Disconnect closes connections with DELETE @connections, always
		// through the management client: a bench's other poster measures
		// posting, not closing.
		Closer: client,
	})

	g.routes = sync.OnceValue(func() *handler.Routes {
		r := handler.NewRoutes(g.Store, g.Log)
		r.Configure(cfg)
		// A recovering subscribe replays missed messages to its
		// connection through the fan-out's poster: the same management
		// client (the emulator's on the devstack), timed by the same
		// metrics.
		r.Poster = mgmt
		return r
	})
	g.Publish = handler.NewPublish(g.Fanout, g.Log)
	// A client's publish goes through the fan-out a backend's does; its
	// rate is kept in the store, since on AWS each publish is an
	// invocation of its own.
	rates, ok := g.Store.(store.RateLimiter)
	if !ok {
		return nil, fmt.Errorf("assembly: store %T keeps no rate limits (store.RateLimiter)", g.Store)
	}
	limit := store.RateLimit{Rate: cfg.ClientPublishRate, Burst: cfg.ClientPublishBurst}
	g.clientPublish = sync.OnceValue(func() *handler.ClientPublish {
		return handler.NewClientPublish(g.Routes(), g.Fanout, rates, limit)
	})

	g.Publisher = publisher.Config{
		// The store also answers History.
		Service: publisher.NewService(g.Fanout, g.Store),
		Ready:   g.Store.Ping,
		Metrics: g.Metrics,
		APIKeys: cfg.APIKeys,
		Log:     g.Log,
		// The deadline of a call whose caller set none (CALL_TIMEOUT).
		CallTimeout: cfg.CallTimeout,
	}
	return g, nil
}

// Routes answers the WebSocket API's routes, with the settings applied:
// connect tokens, the subscription limit, the call deadline, history and
// recovery. RouteTable maps route keys to them.
func (g *Gateway) Routes() *handler.Routes { return g.routes() }

// ClientPublish answers the publish route: browsers publishing to a topic
// over their WebSocket, through the fan-out, within CLIENT_PUBLISH_RATE.
func (g *Gateway) ClientPublish() *handler.ClientPublish { return g.clientPublish() }

// RouteHandler answers one WebSocket route, as a Lambda function does.
type RouteHandler func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)

// RouteTable maps each route key of the WebSocket API to the handler that
// answers it, as deploy/template.yaml routes them on AWS.
func (g *Gateway) RouteTable() map[string]RouteHandler {
	r := g.Routes()
	return map[string]RouteHandler{
		"$connect":                r.Connect,
		"$disconnect":             r.Disconnect,
		"$default":                r.Default,
		wsproto.ActionSubscribe:   r.Subscribe,
		wsproto.ActionUnsubscribe: r.Unsubscribe,
		wsproto.ActionPublish:     g.ClientPublish().Handle,
	}
}

// MockRoutes maps the route keys API Gateway answers itself, with a MOCK
// integration, to their fixed reply: a ping costs no Lambda invocation.
func MockRoutes() map[string]string {
	return map[string]string{wsproto.ActionPing: string(wsproto.PongFrame())}
}

// Logger returns a logger over h whose lines, logged with a call's
// context, carry its ids: request_id during a publisher call,
// aws_request_id (the id in Lambda's own START/END/REPORT lines) during a
// Lambda invocation. One call's lines can then be found among a busy
// process's.
func Logger(h slog.Handler) *slog.Logger {
	return slog.New(tagCalls(h))
}

func tagCalls(h slog.Handler) slog.Handler {
	return logctx.Wrap(h, publisher.RequestIDField, awsRequestID)
}

// awsRequestID is a Lambda invocation's id.
var awsRequestID = logctx.Field{Key: "aws_request_id", From: func(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		return lc.AwsRequestID
	}
	return ""
}}
