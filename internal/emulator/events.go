package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// requestTimeLayout is requestContext.requestTime's format
// ("20/Jan/2024:11:55:00 +0000").
const requestTimeLayout = "02/Jan/2006:15:04:05 -0700"

// newID returns an id shaped like API Gateway's connection and request ids:
// 16 characters of URL-safe base64 ending in '=' ("JC1dgf9yoAMCK-g="). The
// '=' makes every id exercise the SDK's path escaping.
func newID() string {
	var b [11]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return base64.URLEncoding.EncodeToString(b[:])
}

// newRequestID returns an id shaped like the management API's request ids:
// a random UUID ("4b1d6bd6-2a4f-4e3c-9a77-2f0d7a5c3e10").
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// requestContext fills what every event carries; the fields follow
// aws-lambda-go's events/testdata, which are captured from AWS.
func (e *Emulator) requestContext(c *conn, routeKey, eventType string, now time.Time) events.APIGatewayWebsocketProxyRequestContext {
	reqID := newID()
	return events.APIGatewayWebsocketProxyRequestContext{
		RouteKey:          routeKey,
		EventType:         eventType,
		ConnectionID:      c.id,
		ConnectedAt:       c.connectedAt.UnixMilli(),
		DomainName:        c.domainName,
		Stage:             e.stage,
		APIID:             e.apiID,
		RequestID:         reqID,
		ExtendedRequestID: reqID,
		RequestTime:       now.UTC().Format(requestTimeLayout),
		RequestTimeEpoch:  now.UnixMilli(),
		MessageDirection:  "IN",
		Identity: events.APIGatewayRequestIdentity{
			SourceIP:  c.sourceIP,
			UserAgent: c.userAgent,
		},
	}
}

// connectEvent is the $connect event: the only one with the upgrade
// request's headers and query string.
func (e *Emulator) connectEvent(c *conn, r *http.Request, now time.Time) events.APIGatewayWebsocketProxyRequest {
	headers, multiHeaders := connectHeaders(r, c.sourceIP)
	query, multiQuery := singleValues(r.URL.Query())
	return events.APIGatewayWebsocketProxyRequest{
		Headers:                         headers,
		MultiValueHeaders:               multiHeaders,
		QueryStringParameters:           query,
		MultiValueQueryStringParameters: multiQuery,
		RequestContext:                  e.requestContext(c, RouteConnect, "CONNECT", now),
	}
}

// connectHeaders returns the request's headers plus those API Gateway's
// front end adds; net/http keeps Host out of r.Header.
func connectHeaders(r *http.Request, sourceIP string) (map[string]string, map[string][]string) {
	h := r.Header.Clone()
	h.Set("Host", r.Host)
	forwarded := sourceIP
	if prior := h.Get("X-Forwarded-For"); prior != "" {
		forwarded = prior + ", " + sourceIP
	}
	h.Set("X-Forwarded-For", forwarded)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	h.Set("X-Forwarded-Proto", proto)
	return singleValues(h)
}

// singleValues returns API Gateway's pair of views of a multi-valued map:
// the last value of each key, and all of them. Both are nil when m is
// empty, as the fields are absent from AWS's events then.
func singleValues[M ~map[string][]string](m M) (map[string]string, map[string][]string) {
	if len(m) == 0 {
		return nil, nil
	}
	single := make(map[string]string, len(m))
	for k, vs := range m {
		if len(vs) > 0 {
			single[k] = vs[len(vs)-1]
		}
	}
	return single, map[string][]string(m)
}

func (e *Emulator) messageEvent(c *conn, routeKey string, body []byte) events.APIGatewayWebsocketProxyRequest {
	rc := e.requestContext(c, routeKey, "MESSAGE", time.Now())
	rc.MessageID = newID()
	return events.APIGatewayWebsocketProxyRequest{
		Body:           string(body),
		RequestContext: rc,
	}
}

func (e *Emulator) disconnectEvent(c *conn, status closeStatus) events.APIGatewayWebsocketProxyRequest {
	rc := e.requestContext(c, RouteDisconnect, "DISCONNECT", time.Now())
	rc.DisconnectStatusCode = int64(status.code)
	rc.DisconnectReason = &status.reason
	return events.APIGatewayWebsocketProxyRequest{
		Headers:           map[string]string{"Host": c.domainName},
		MultiValueHeaders: map[string][]string{"Host": {c.domainName}},
		RequestContext:    rc,
	}
}
