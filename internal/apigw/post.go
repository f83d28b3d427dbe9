package apigw

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/smithy-go/encoding/httpbinding"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// signingName is the SigV4 service name of the management API.
const signingName = "execute-api"

// poster is PostToConnection as a fixed pipeline made of the SDK client's
// own parts: the endpoint its rules resolved (once), its path escaping, its
// SigV4 signer and credentials, its HTTP client.
//
// The SDK assembles a stack of some 25 middlewares for every call and runs
// them all: per call it resolves the endpoint, builds a user agent, draws an
// invocation id, runs a retry loop that will not retry, and hands the body
// to net/http in a wrapper that costs an extra write syscall. For the one
// call the fan-out makes per subscriber, that was more CPU than the HTTP
// exchange itself. The pipeline keeps what the wire needs: the same
// request, signed the same way.
//
// Every answer but a 2xx, and every failure to get one, goes back through
// the SDK client, which decodes it from that very outcome (see replay): the
// typed errors (*types.GoneException, …) and their wrapping are the SDK's
// own, not a copy of its decoder.
type poster struct {
	api    *apigatewaymanagementapi.Client
	http   apigatewaymanagementapi.HTTPClient
	prefix string // {endpoint}/@connections/; "" leaves every call to the SDK
	header http.Header
	creds  aws.CredentialsProvider
	signer apigatewaymanagementapi.HTTPSignerV4
	region string
}

func newPoster(api *apigatewaymanagementapi.Client, resolver apigatewaymanagementapi.EndpointResolverV2, httpClient apigatewaymanagementapi.HTTPClient) poster {
	o := api.Options()
	p := poster{api: api, http: httpClient, signer: o.HTTPSignerV4, region: o.Region}
	e, ok := resolver.(resolved)
	if !ok || o.Credentials == nil || o.Region == "" {
		return p // no endpoint, or anonymous: the SDK knows what to say
	}
	p.creds = o.Credentials
	if !aws.IsCredentialsProvider(p.creds, (*aws.CredentialsCache)(nil)) {
		p.creds = aws.NewCredentialsCache(p.creds)
	}
	u := e.URI
	p.prefix = u.Scheme + "://" + u.Host + smithyhttp.JoinPath(u.EscapedPath(), "/@connections/")
	p.header = e.Headers
	return p
}

func (p *poster) postToConnection(ctx context.Context, connectionID string, data []byte) error {
	if p.prefix == "" || connectionID == "" {
		return p.sdk(ctx, connectionID, data, nil) // and its validation
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.prefix+httpbinding.EscapePath(connectionID, true), bytes.NewReader(data))
	if err != nil {
		return p.sdk(ctx, connectionID, data, nil)
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	creds, err := p.creds.Retrieve(ctx)
	if err != nil {
		return p.sdk(ctx, connectionID, data, nil)
	}
	sum := sha256.Sum256(data)
	if err := p.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), signingName, p.region, time.Now()); err != nil {
		return p.sdk(ctx, connectionID, data, nil)
	}
	resp, err := p.http.Do(req)
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// What the SDK does with a success: drain the body, so the
		// connection goes back to the pool.
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	return p.sdk(ctx, connectionID, data, &replay{resp, err})
}

// sdk makes the call through the SDK client; with r, the SDK's HTTP
// exchange is r's outcome instead of a new one.
func (p *poster) sdk(ctx context.Context, connectionID string, data []byte, r *replay) error {
	in := &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(connectionID), Data: data}
	var err error
	if r == nil {
		_, err = p.api.PostToConnection(ctx, in)
		return err
	}
	_, err = p.api.PostToConnection(ctx, in, func(o *apigatewaymanagementapi.Options) { o.HTTPClient = r })
	if r.resp != nil {
		r.resp.Body.Close()
	}
	return err
}

// replay is an HTTP client whose one exchange already happened.
type replay struct {
	resp *http.Response
	err  error
}

func (r *replay) Do(*http.Request) (*http.Response, error) { return r.resp, r.err }
