package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgateway/wsgateway/internal/apigw"
)

// plainPoster posts with plain net/http and no SDK: the throwaway
// prototype's path, a reference for what the SDK costs. It does not sign:
// a fixed Authorization header gets it past the emulator, which checks that
// calls are signed but cannot verify signatures.
type plainPoster struct {
	client *http.Client
	base   string
}

func newPlainPoster(endpoint string) plainPoster {
	return plainPoster{
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: apigw.MaxIdleConnsPerHost}},
		base:   endpoint + "/@connections/",
	}
}

func (p plainPoster) PostToConnection(ctx context.Context, connectionID string, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+url.PathEscape(connectionID), bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=reference")
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", apigw.ErrUnreachable, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		return nil
	case code == http.StatusGone:
		return apigw.ErrGone
	case code == http.StatusTooManyRequests:
		return apigw.ErrThrottled
	case code >= 500:
		return fmt.Errorf("%w: %s", apigw.ErrServer, resp.Status)
	default:
		return fmt.Errorf("management API answered %s", resp.Status)
	}
}

// naivePoster posts with the SDK client as NewFromConfig makes it: the
// naive SDK path, a reference for what internal/apigw saves. Only success
// matters to the benchmark, which counts anything else as failed.
type naivePoster struct {
	api *apigatewaymanagementapi.Client
}

func newNaivePoster(cfg aws.Config, endpoint string) naivePoster {
	return naivePoster{apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	})}
}

func (p naivePoster) PostToConnection(ctx context.Context, connectionID string, data []byte) error {
	_, err := p.api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(connectionID), Data: data})
	return err
}
