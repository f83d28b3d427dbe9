package dynalite

import (
	"crypto/rand"
	"encoding/json"
	"hash/crc32"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
)

// ErrorType names a DynamoDB error as its wire format does: the "__type" of
// the JSON body of a 400 response.
type ErrorType string

const (
	// ProvisionedThroughputExceeded is what a provisioned table or index
	// answers when a request would go over its capacity.
	ProvisionedThroughputExceeded ErrorType = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
	// Throttling is what an on-demand table answers while it scales up to a
	// new peak.
	Throttling ErrorType = "com.amazon.coral.availability#ThrottlingException"
)

// messages are DynamoDB's own, so that logged errors read as in production.
var messages = map[ErrorType]string{
	ProvisionedThroughputExceeded: "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
	Throttling:                    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly.",
}

// Throttle makes the proxy answer fraction (0 to 1) of the requests with
// errorType instead of forwarding them, until Throttle is called again;
// Throttle(0, "") forwards them all. The throttled requests are spread
// evenly and deterministically: 0.5 is every other request, 1 every one.
func (s *Server) Throttle(fraction float64, errorType ErrorType) {
	s.tb.Helper()
	if math.IsNaN(fraction) || fraction < 0 || fraction > 1 {
		s.tb.Fatalf("dynalite: Throttle(%v): the fraction of requests must be between 0 and 1", fraction)
	}
	if fraction > 0 && errorType == "" {
		s.tb.Fatalf("dynalite: Throttle(%v, \"\"): name the error to answer with", fraction)
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.fraction, s.faults.errorType = fraction, errorType
	s.faults.seen, s.faults.hit = 0, 0
}

// ThrottleNext answers the next n requests with errorType, then goes back to
// what Throttle set: a burst of throttling, as a hot partition gives.
func (s *Server) ThrottleNext(n int, errorType ErrorType) {
	s.tb.Helper()
	if n < 0 || errorType == "" {
		s.tb.Fatalf("dynalite: ThrottleNext(%d, %q): want n >= 0 and an error to answer with", n, errorType)
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.burst, s.faults.burstType = n, errorType
}

// Throttled is how many requests the proxy has answered with an error since
// the server started, so a test can check its faults took effect.
func (s *Server) Throttled() int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return s.faults.throttled
}

// faults decides, request by request, which ones the proxy throttles.
type faults struct {
	mu        sync.Mutex
	fraction  float64
	errorType ErrorType
	seen, hit int // requests counted, and throttled, since Throttle
	burst     int // requests ThrottleNext has yet to throttle
	burstType ErrorType
	throttled int
}

// next says whether to throttle the request now arriving, and with what.
func (f *faults) next() (ErrorType, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.burst > 0 {
		f.burst--
		f.throttled++
		return f.burstType, true
	}
	// Throttle whenever the hits fall behind fraction of the requests:
	// evenly spread, and the same sequence on every run.
	f.seen++
	if float64(f.hit+1) > f.fraction*float64(f.seen) {
		return "", false
	}
	f.hit++
	f.throttled++
	return f.errorType, true
}

// proxy sits between the SDK and dynalite, so tests inject DynamoDB's faults
// over the same HTTP the SDK speaks to AWS.
type proxy struct {
	faults  *faults
	forward *httputil.ReverseProxy
}

func newProxy(f *faults, target *url.URL, transport http.RoundTripper) *proxy {
	return &proxy{faults: f, forward: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the Host the SDK signed
		},
		Transport: transport,
		// A request cut by Stop fails by design; its client sees the error.
		ErrorLog: log.New(io.Discard, "", 0),
	}}
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if errorType, ok := p.faults.next(); ok {
		writeError(w, errorType)
		return
	}
	p.forward.ServeHTTP(w, r)
}

// writeError answers as DynamoDB does: 400 with the error named by the JSON
// body's __type (DynamoDB sends no X-Amzn-ErrorType header), a request id,
// and the body's CRC32, which the SDK verifies.
func writeError(w http.ResponseWriter, errorType ErrorType) {
	msg, ok := messages[errorType]
	if !ok {
		msg = "injected by the dynalite test proxy"
	}
	body, err := json.Marshal(map[string]string{"__type": string(errorType), "message": msg})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("x-amzn-RequestId", rand.Text())
	h.Set("x-amz-crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}
