package main

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

// The reference publishers of the cpu scenario: the same publisher service
// and fan-out as the product, posting another way, so that what the
// product's client (internal/apigw) costs is measured against what it
// replaced on the same stack in the same run.

// plainPoster posts with plain net/http and no SDK, the cheapest way there
// is: a floor for what signing and the SDK cost. It does not sign: a fixed
// Authorization header gets it past the emulator, which checks that calls
// are signed but cannot verify signatures.
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
		return fmt.Errorf("%w: %w", apigw.ErrUnreachable, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Without latency or quota nothing but success is expected: the
		// bench counts anything else as a failed delivery.
		return fmt.Errorf("management API answered %s", resp.Status)
	}
	return nil
}

// naivePoster posts with the SDK client as NewFromConfig makes it: a naive
// publisher that posts with the default SDK client, the baseline ours is
// measured against.
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
