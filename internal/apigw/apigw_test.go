package apigw_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"

	"github.com/wsgateway/wsgateway/internal/apigw"
)

func testConfig() aws.Config {
	return aws.Config{
		Region:      "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	}
}

// request is what the fake management API saw.
type request struct {
	method, path, auth string
	body               []byte
}

// recorder answers every request with status, errorType and body, the way
// API Gateway does, and records what it received.
type recorder struct {
	status    int
	errorType string
	body      string

	mu   sync.Mutex
	seen []request
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.seen = append(rec.seen, request{r.Method, r.URL.Path, r.Header.Get("Authorization"), body})
	rec.mu.Unlock()
	if rec.errorType != "" {
		w.Header().Set("x-amzn-ErrorType", rec.errorType)
	}
	if rec.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rec.status)
	io.WriteString(w, rec.body)
}

func (rec *recorder) requests() []request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]request(nil), rec.seen...)
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestPostToConnectionRequest(t *testing.T) {
	t.Parallel()
	// A real connection id: base64 with '=' padding, which the SDK escapes.
	const id = "L0SM9cOFvHcCIhw="
	data := []byte(`{"type":"message","data":"héllo \u2028 <b>"}` + "\x00")

	tests := []struct {
		name, basePath, wantPath string
	}{
		{"root endpoint (devstack)", "", "/@connections/" + id},
		{"stage endpoint (AWS)", "/prod", "/prod/@connections/" + id},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{status: http.StatusOK}
			srv := serve(t, rec)
			c := apigw.New(testConfig(), srv.URL+tt.basePath)

			if err := c.PostToConnection(t.Context(), id, data); err != nil {
				t.Fatalf("PostToConnection: %v", err)
			}
			seen := rec.requests()
			if len(seen) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(seen))
			}
			got := seen[0]
			if got.method != http.MethodPost || got.path != tt.wantPath {
				t.Errorf("request = %s %s, want POST %s", got.method, got.path, tt.wantPath)
			}
			if string(got.body) != string(data) {
				t.Errorf("body = %q, want %q", got.body, data)
			}
			if !strings.HasPrefix(got.auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") ||
				!strings.Contains(got.auth, "/eu-west-1/execute-api/aws4_request") {
				t.Errorf("Authorization = %q, want a SigV4 signature for execute-api in eu-west-1", got.auth)
			}
		})
	}
}

func TestPostToConnectionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		errorType string
		body      string
		want      error // nil: success
		wantOther bool  // an error that is none of the sentinels
	}{
		{"ok", 200, "", "", nil, false},
		{"gone", 410, "GoneException", `{"message":null}`, apigw.ErrGone, false},
		{"gone with AWS's error type suffix", 410, "GoneException:http://internal.amazon.com/coral/com.amazonaws.apigateway/", `{}`, apigw.ErrGone, false},
		{"limit exceeded", 429, "LimitExceededException", `{"message":"Rate exceeded"}`, apigw.ErrThrottled, false},
		{"429 without error type", 429, "", `{"message":"Too Many Requests"}`, apigw.ErrThrottled, false},
		{"payload too large", 413, "PayloadTooLargeException", `{"message":"Message too long"}`, apigw.ErrTooLarge, false},
		{"forbidden", 403, "ForbiddenException", `{"message":"Forbidden"}`, apigw.ErrForbidden, false},
		{"internal error", 500, "InternalServerErrorException", `{"message":"Internal server error"}`, apigw.ErrServer, false},
		{"bad gateway with an HTML body", 502, "", "<html>Bad Gateway</html>", apigw.ErrServer, false},
		{"unavailable", 503, "ServiceUnavailableException", `{}`, apigw.ErrServer, false},
		{"bad request", 400, "BadRequestException", `{"message":"Invalid connectionId"}`, nil, true},
	}
	sentinels := []error{apigw.ErrGone, apigw.ErrThrottled, apigw.ErrTooLarge, apigw.ErrForbidden, apigw.ErrServer, apigw.ErrUnreachable}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{status: tt.status, errorType: tt.errorType, body: tt.body}
			c := apigw.New(testConfig(), serve(t, rec).URL)

			err := c.PostToConnection(t.Context(), "abc", []byte(`{}`))

			switch {
			case tt.want == nil && !tt.wantOther && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("err = %v, want errors.Is %v", err, tt.want)
			case tt.wantOther && err == nil:
				t.Fatal("err = nil, want an error")
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("err = %v also matches %v", err, s)
				}
			}
			// The SDK's own retries are off: the fan-out owns retrying.
			if n := len(rec.requests()); n != 1 {
				t.Errorf("server saw %d requests, want exactly 1 (no SDK retries)", n)
			}
		})
	}
}

// The sentinel is added to the chain, not swapped in: the SDK's typed error
// (and its request id) stays reachable for logs.
func TestErrorKeepsSDKError(t *testing.T) {
	t.Parallel()
	rec := &recorder{status: 410, errorType: "GoneException", body: `{}`}
	c := apigw.New(testConfig(), serve(t, rec).URL)

	err := c.PostToConnection(t.Context(), "abc", []byte(`{}`))
	var gone *types.GoneException
	if !errors.As(err, &gone) {
		t.Fatalf("err = %v, want a *types.GoneException in the chain", err)
	}
}

func TestPostToConnectionUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more

	err := apigw.New(testConfig(), url).PostToConnection(t.Context(), "abc", []byte(`{}`))
	if !errors.Is(err, apigw.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

func TestPostToConnectionContextDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hang like a stuck connection until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer close(release)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := apigw.New(testConfig(), srv.URL).PostToConnection(ctx, "abc", []byte(`{}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if errors.Is(err, apigw.ErrUnreachable) {
		t.Errorf("err = %v: a caller's deadline is not ErrUnreachable", err)
	}
}

func TestDeleteConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		errorType string
		want      error
	}{
		{"closed", http.StatusNoContent, "", nil},
		{"already gone", http.StatusGone, "GoneException", apigw.ErrGone},
		{"forbidden", http.StatusForbidden, "ForbiddenException", apigw.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{status: tt.status, errorType: tt.errorType}
			if tt.errorType != "" {
				rec.body = `{}`
			}
			c := apigw.New(testConfig(), serve(t, rec).URL+"/dev")

			err := c.DeleteConnection(t.Context(), "conn-1")
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			seen := rec.requests()
			if len(seen) != 1 || seen[0].method != http.MethodDelete || seen[0].path != "/dev/@connections/conn-1" {
				t.Errorf("requests = %+v, want one DELETE /dev/@connections/conn-1", seen)
			}
		})
	}
}

// Concurrent posts reuse kept-alive connections instead of dialing one per
// call past the SDK default of 10 idle connections.
func TestPostReusesConnections(t *testing.T) {
	t.Parallel()
	const parallel = 32
	var dials atomic.Int32
	srv := httptest.NewUnstartedServer(&recorder{status: http.StatusOK})
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := apigw.New(testConfig(), srv.URL)

	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, parallel)
		for i := range parallel {
			wg.Go(func() {
				errs <- c.PostToConnection(t.Context(), fmt.Sprint("c", round, i), []byte(`{}`))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	// Round one dials up to 32 connections; later rounds reuse them. With
	// the SDK's default pool, each later round would dial ~22 more.
	if n := dials.Load(); n > parallel {
		t.Errorf("server accepted %d connections for 3 rounds of %d parallel posts, want at most %d", n, parallel, parallel)
	}
}

// BenchmarkPostToConnection is the client's cost per call (and a no-op
// server's, in the same process): the fan-out's hot path.
func BenchmarkPostToConnection(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	c := apigw.New(testConfig(), srv.URL)
	data := []byte(strings.Repeat("x", 200))
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.PostToConnection(context.Background(), "L0SM9cOFvHcCIhw=", data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// PostToConnection's own pipeline sends what the SDK client sends: the same
// request line, body and content headers, with a SigV4 signature that
// verifies. The SDK's request is checked the same way, so the test cannot
// pass by accident.
func TestPostToConnectionMatchesSDK(t *testing.T) {
	t.Parallel()
	const id = "L0SM9cOFvHcCIhw="
	data := []byte(`{"type":"message","n":1}`)
	cfg := testConfig()

	type seen struct{ requestURI, contentType, contentLength, body, signedHeaders string }
	var mu sync.Mutex
	var got []seen
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		signed, err := verifySigV4(r, body, cfg)
		if err != nil {
			t.Errorf("%s: %v", r.Header.Get("User-Agent"), err)
		}
		mu.Lock()
		got = append(got, seen{r.RequestURI, r.Header.Get("Content-Type"), r.Header.Get("Content-Length"), string(body), signed})
		mu.Unlock()
	}))
	sdk := apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(srv.URL + "/prod")
	})
	if _, err := sdk.PostToConnection(t.Context(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: data}); err != nil {
		t.Fatalf("SDK: %v", err)
	}
	if err := apigw.New(cfg, srv.URL+"/prod").PostToConnection(t.Context(), id, data); err != nil {
		t.Fatalf("apigw: %v", err)
	}

	if len(got) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(got))
	}
	sdkReq, ours := got[0], got[1]
	if sdkReq.requestURI != "/prod/@connections/L0SM9cOFvHcCIhw%3D" {
		t.Errorf("the SDK sent %s: the test's expectations are stale", sdkReq.requestURI)
	}
	if ours.requestURI != sdkReq.requestURI || ours.contentType != sdkReq.contentType ||
		ours.contentLength != sdkReq.contentLength || ours.body != sdkReq.body {
		t.Errorf("apigw sent %+v, the SDK %+v", ours, sdkReq)
	}
	for h := range strings.SplitSeq(ours.signedHeaders, ";") {
		if !slices.Contains(strings.Split(sdkReq.signedHeaders, ";"), h) {
			t.Errorf("apigw signs %q, which the SDK does not (%s)", h, sdkReq.signedHeaders)
		}
	}
}

// verifySigV4 checks r's SigV4 signature the way a server would: it signs
// the request again, with only the headers the client signed, and compares.
// It returns the signed header names.
func verifySigV4(r *http.Request, body []byte, cfg aws.Config) (string, error) {
	auth := r.Header.Get("Authorization")
	_, signedPart, ok := strings.Cut(auth, "SignedHeaders=")
	if !ok {
		return "", fmt.Errorf("Authorization %q is not SigV4", auth)
	}
	signed, _, _ := strings.Cut(signedPart, ",")
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "", fmt.Errorf("X-Amz-Date: %w", err)
	}
	again := r.Clone(context.Background())
	again.URL.Host, again.Host = r.Host, r.Host
	again.Header = http.Header{}
	for h := range strings.SplitSeq(signed, ";") {
		if h != "host" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	again.ContentLength = int64(len(body))
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), "execute-api", cfg.Region, at); err != nil {
		return "", err
	}
	if want := again.Header.Get("Authorization"); want != auth {
		return "", fmt.Errorf("signature does not verify:\n got  %s\n want %s", auth, want)
	}
	return signed, nil
}
