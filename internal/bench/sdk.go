package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgateway/wsgateway/internal/apigw"
)

// SDKResult is scenario 4: PostToConnection calls per second against a
// management endpoint that does nothing, by three clients.
type SDKResult struct {
	Concurrency int `json:"concurrency"`
	// Plain is net/http with a hand-made request: no signing, no SDK.
	Plain float64 `json:"plain_net_http_per_sec"`
	// SDK is the product's client (internal/apigw): the real SDK, SigV4.
	SDK float64 `json:"sdk_per_sec"`
	// DefaultSDK is the SDK client as NewFromConfig makes it.
	DefaultSDK float64 `json:"default_sdk_per_sec"`
	// Ratio is Plain / SDK: the SDK's overhead.
	Ratio float64 `json:"ratio"`
}

// sdkConcurrency is how many calls each client keeps in flight: enough to
// keep both ends of the loopback busy.
const sdkConcurrency = 32

// runSDK is scenario 4.
func runSDK(ctx context.Context, cfg Config) (SDKResult, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return SDKResult{}, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(noop)}
	go srv.Serve(lis)
	defer srv.Close()
	endpoint := "http://" + lis.Addr().String()
	body := bytes.Repeat([]byte("x"), 200)

	product := apigw.New(cfg.aws, endpoint)
	def := apigatewaymanagementapi.NewFromConfig(cfg.aws, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})
	plain := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: sdkConcurrency}}
	clients := []struct {
		name string
		rate *float64
		post func(ctx context.Context, id string) error
	}{
		{"plain net/http", nil, func(ctx context.Context, id string) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/@connections/"+id, bytes.NewReader(body))
			if err != nil {
				return err
			}
			resp, err := plain.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return errors.New(resp.Status)
			}
			return nil
		}},
		{"SDK (apigw)", nil, func(ctx context.Context, id string) error {
			return product.PostToConnection(ctx, id, body)
		}},
		{"SDK (default)", nil, func(ctx context.Context, id string) error {
			_, err := def.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: body})
			return err
		}},
	}
	r := SDKResult{Concurrency: sdkConcurrency}
	clients[0].rate, clients[1].rate, clients[2].rate = &r.Plain, &r.SDK, &r.DefaultSDK
	// The clients take turns, so that what else the machine does weighs
	// on each alike.
	for range sdkRounds {
		for _, c := range clients {
			rate, err := callRate(ctx, cfg.SDKDuration/sdkRounds, c.post)
			if err != nil {
				return r, fmt.Errorf("%s: %w", c.name, err)
			}
			*c.rate += rate / sdkRounds
		}
	}
	for _, c := range clients {
		cfg.progress("sdk %-15s %8.0f calls/s", c.name, *c.rate)
	}
	r.Ratio = r.Plain / r.SDK
	return r, nil
}

// sdkRounds is how many turns each client of scenario 4 takes.
const sdkRounds = 3

// noop is a management API that accepts every post and does nothing.
func noop(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if !strings.HasPrefix(r.URL.Path, "/@connections/") {
		w.WriteHeader(http.StatusForbidden)
	}
}

// callRate runs post from sdkConcurrency goroutines for d, after a warm-up
// of d/4, and returns the calls completed per second.
func callRate(ctx context.Context, d time.Duration, post func(ctx context.Context, id string) error) (float64, error) {
	var calls atomic.Int64
	var counting atomic.Bool
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for w := range sdkConcurrency {
		wg.Go(func() {
			id := fmt.Sprintf("conn-%d=", w)
			for ctx.Err() == nil {
				if err := post(ctx, id); err != nil {
					if ctx.Err() == nil {
						cancel(err)
					}
					return
				}
				if counting.Load() {
					calls.Add(1)
				}
			}
		})
	}
	if err := waitCtx(ctx, d/4); err != nil {
		wg.Wait()
		return 0, context.Cause(ctx)
	}
	counting.Store(true)
	start := time.Now()
	err := waitCtx(ctx, d)
	n := calls.Load()
	elapsed := time.Since(start)
	cancel(nil)
	wg.Wait()
	if err != nil {
		return 0, context.Cause(ctx)
	}
	return float64(n) / elapsed.Seconds(), nil
}
