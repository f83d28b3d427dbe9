// Package metrics exposes wsgateway's Prometheus metrics: publishes and
// deliveries as the fan-out sees them, management call latency, gRPC calls,
// and the Go runtime and process. Every metric is registered on a registry
// the caller passes in, so a test or the devstack can have its own, and
// every one of ours is named wsgateway_*.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
)

const namespace = "wsgateway"

// Buckets, in seconds. A single call (a store query, a post) takes
// milliseconds and is cut at fanout.DefaultCallTimeout; a whole fan-out to
// a large topic takes seconds.
var (
	callBuckets   = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	fanoutBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// outcome names the errors that wrap err, for a label; the first match
// in a table wins, so more specific errors come first.
type outcome struct {
	label string
	err   error
}

const (
	outcomeOK    = "ok"
	outcomeOther = "error" // matched nothing in the table
)

func classify(err error, table []outcome) string {
	if err == nil {
		return outcomeOK
	}
	for _, o := range table {
		if errors.Is(err, o.err) {
			return o.label
		}
	}
	return outcomeOther
}

// publishOutcomes label what fanout.Publish returned. The context comes
// before the store: a read cut by the deadline is the caller's, not an
// outage.
var publishOutcomes = []outcome{
	{"invalid", fanout.ErrInvalid},
	{"deadline_exceeded", context.DeadlineExceeded},
	{"canceled", context.Canceled},
	{"unavailable", store.ErrUnavailable},
}

// postOutcomes label a management call by the apigw sentinel it returned.
var postOutcomes = []outcome{
	{"gone", apigw.ErrGone},
	{"throttled", apigw.ErrThrottled},
	{"too_large", apigw.ErrTooLarge},
	{"forbidden", apigw.ErrForbidden},
	{"server_error", apigw.ErrServer},
	{"unreachable", apigw.ErrUnreachable},
	{"timeout", context.DeadlineExceeded},
	{"canceled", context.Canceled},
}

// labels are every value classify can give for table.
func labels(table []outcome) []string {
	l := []string{outcomeOK, outcomeOther}
	for _, o := range table {
		l = append(l, o.label)
	}
	return l
}

// Metrics holds the metrics and implements fanout.Observer. Every labelled
// series is resolved once, in New, so that observing allocates nothing and
// every series shows (at zero) from the first scrape on.
type Metrics struct {
	reg *prometheus.Registry

	publishes                    map[string]prometheus.Counter // by outcome
	delivered, gone, failed      prometheus.Counter
	retries                      prometheus.Counter
	fanoutSeconds, lookupSeconds prometheus.Observer
	postSeconds                  map[string]prometheus.Observer // by outcome
	grpc                         *grpcprom.ServerMetrics
}

// New registers wsgateway's metrics, the Go runtime's and the process's on
// reg. It panics if any is registered there already, like
// prometheus.MustRegister: that is a wiring mistake.
func New(reg *prometheus.Registry) *Metrics {
	publishes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "publishes_total",
		Help: "Publish calls by outcome: ok (the fan-out ran; see deliveries), invalid, unavailable (store), deadline_exceeded, canceled, error.",
	}, []string{"outcome"})
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "deliveries_total",
		Help: "Subscribers a message was fanned out to, by how it ended: delivered, gone (410, connection forgotten), failed.",
	}, []string{"outcome"})
	retries := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "delivery_retries_total",
		Help: "Posts tried again after throttling, a server error or a timeout.",
	})
	fanoutSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "fanout_duration_seconds",
		Help:    "Duration of a publish call, subscriber reads and every delivery included; refused (invalid) publishes are not observed.",
		Buckets: fanoutBuckets,
	})
	lookupSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "subscriber_lookup_duration_seconds",
		Help:    "Duration of one read of a page of a topic's subscribers from the store.",
		Buckets: callBuckets,
	})
	postSeconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "management_call_duration_seconds",
		Help:    "Duration of PostToConnection calls to the API Gateway management API, by outcome.",
		Buckets: callBuckets,
	}, []string{"outcome"})
	grpcMetrics := grpcprom.NewServerMetrics(
		grpcprom.WithServerCounterOptions(grpcprom.WithNamespace(namespace)),
		grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramNamespace(namespace),
			grpcprom.WithHistogramBuckets(fanoutBuckets),
		),
	)
	reg.MustRegister(
		publishes, deliveries, retries, fanoutSeconds, lookupSeconds, postSeconds, grpcMetrics,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	m := &Metrics{
		reg:           reg,
		publishes:     map[string]prometheus.Counter{},
		delivered:     deliveries.WithLabelValues("delivered"),
		gone:          deliveries.WithLabelValues("gone"),
		failed:        deliveries.WithLabelValues("failed"),
		retries:       retries,
		fanoutSeconds: fanoutSeconds,
		lookupSeconds: lookupSeconds,
		postSeconds:   map[string]prometheus.Observer{},
		grpc:          grpcMetrics,
	}
	for _, l := range labels(publishOutcomes) {
		m.publishes[l] = publishes.WithLabelValues(l)
	}
	for _, l := range labels(postOutcomes) {
		m.postSeconds[l] = postSeconds.WithLabelValues(l)
	}
	return m
}

// Handler serves the registry in the Prometheus text format, for /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// TrackConnections exports count, called at each scrape, as the gauge
// wsgateway_connections_active. Only the devstack can count: on AWS the
// connections are API Gateway's (its CloudWatch metric ConnectCount).
func (m *Metrics) TrackConnections(count func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "connections_active",
		Help: "WebSocket connections open now.",
	}, func() float64 { return float64(count()) }))
}

// PublishDone implements fanout.Observer.
func (m *Metrics) PublishDone(res fanout.Result, err error, d time.Duration) {
	o := classify(err, publishOutcomes)
	m.publishes[o].Inc()
	m.delivered.Add(float64(res.Delivered))
	m.gone.Add(float64(res.Gone))
	m.failed.Add(float64(res.Failed))
	// A refused publish returns in microseconds and would only drag the
	// distribution of real fan-outs down.
	if o != "invalid" {
		m.fanoutSeconds.Observe(d.Seconds())
	}
}

// LookupDone implements fanout.Observer.
func (m *Metrics) LookupDone(d time.Duration) { m.lookupSeconds.Observe(d.Seconds()) }

// Retry implements fanout.Observer.
func (m *Metrics) Retry() { m.retries.Inc() }

// UnaryServerInterceptor counts and times every unary gRPC call by method
// and code (wsgateway_grpc_server_*).
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// InitializeGRPC creates the series of every method registered on s, at
// zero, so that rates work from the first call on.
func (m *Metrics) InitializeGRPC(s *grpc.Server) { m.grpc.InitializeMetrics(s) }

// Poster times the management calls of the fanout.Poster it wraps.
type Poster struct {
	next    fanout.Poster
	seconds map[string]prometheus.Observer
}

// WrapPoster returns p timed into wsgateway_management_call_duration_seconds.
func (m *Metrics) WrapPoster(p fanout.Poster) *Poster {
	return &Poster{next: p, seconds: m.postSeconds}
}

// PostToConnection implements fanout.Poster.
func (p *Poster) PostToConnection(ctx context.Context, connectionID string, data []byte) error {
	start := time.Now()
	err := p.next.PostToConnection(ctx, connectionID, data)
	p.seconds[classify(err, postOutcomes)].Observe(time.Since(start).Seconds())
	return err
}

var (
	_ fanout.Observer = (*Metrics)(nil)
	_ fanout.Poster   = (*Poster)(nil)
)
