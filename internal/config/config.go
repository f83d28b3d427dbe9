// Package config reads wsgateway's settings from the environment. Every
// binary uses the same names for the same settings and validates them once
// at start, reporting every problem at once.
package config

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Config holds every setting; each binary uses the ones it needs.
type Config struct {
	WSAddr             string   // WS_ADDR: emulated API Gateway (devstack)
	GRPCAddr           string   // GRPC_ADDR: PublisherService
	HTTPAddr           string   // HTTP_ADDR: REST facade, demo page, health
	TableName          string   // TABLE_NAME
	DynamoDBEndpoint   string   // DYNAMODB_ENDPOINT: empty = AWS (or the devstack's in-memory store)
	APIGWEndpoint      string   // APIGW_ENDPOINT: management API base URL
	Region             string   // AWS_REGION
	APIKeys            []string // API_KEYS: empty = publisher auth off
	ConnectTokenSecret string   // CONNECT_TOKEN_SECRET: empty = connect auth off
	MaxSubscriptions   int      // MAX_SUBSCRIPTIONS_PER_CONNECTION
	// CALL_TIMEOUT: the deadline every server-side call gets when its
	// caller set none (a publish, a WebSocket route), so a stalled store
	// cannot pin calls without limit.
	CallTimeout time.Duration
	// HISTORY_TTL: how long published messages are kept for recovery and
	// History; 0 keeps none (offsets are still assigned).
	HistoryTTL time.Duration
	// RECOVERY_MAX_MESSAGES: the most messages one recovery replays; a
	// client that missed more is told to resync instead.
	RecoveryMaxMessages int
	// CLIENT_PUBLISH_RATE and CLIENT_PUBLISH_BURST: the token bucket each
	// connection's client publishes take from, in publishes per second
	// and publishes at once.
	ClientPublishRate  float64
	ClientPublishBurst int
	// Emulator is what the devstack's emulated API Gateway adds of AWS's
	// limits (EMULATOR_*); only the devstack reads it.
	Emulator Emulator
}

// Emulator rehearses AWS's limits and failures on the devstack: the zero
// value is an API Gateway that answers at once and never fails.
type Emulator struct {
	Latency time.Duration // EMULATOR_LATENCY: added to every management call
	// Quota is the account's throttle on management calls, in calls per
	// second (EMULATOR_QUOTA; 0: none), with QuotaBurst calls allowed at
	// once (EMULATOR_QUOTA_BURST; half of Quota when unset, AWS's ratio).
	Quota      float64
	QuotaBurst int
	// Throttle and ServerError are the fractions of management calls
	// answered 429 and 500 (EMULATOR_FAULT_THROTTLE,
	// EMULATOR_FAULT_SERVER_ERROR); LoseDisconnect the fraction of ended
	// connections whose $disconnect never fires
	// (EMULATOR_FAULT_LOSE_DISCONNECT).
	Throttle, ServerError, LoseDisconnect float64
	// Seed seeds the faults' draws, so that a run can be repeated
	// (EMULATOR_FAULT_SEED).
	Seed uint64
}

// Setting documents one environment variable for -h output and the README.
type Setting struct {
	Name, Default, Help string
}

// Settings lists every variable Load reads, in the order -h prints them.
var Settings = []Setting{
	{"WS_ADDR", "127.0.0.1:8080", "WebSocket API and @connections management API (devstack)"},
	{"GRPC_ADDR", "127.0.0.1:9090", "gRPC PublisherService, reflection and health"},
	{"HTTP_ADDR", "127.0.0.1:8081", "REST facade /v1, /healthz, /readyz, /metrics; the devstack's demo page"},
	{"TABLE_NAME", "wsgateway", "DynamoDB table of connections and subscriptions"},
	{"DYNAMODB_ENDPOINT", "", "DynamoDB endpoint URL; empty: AWS (devstack: in-memory store)"},
	{"APIGW_ENDPOINT", "", "API Gateway management API base URL, e.g. https://{api-id}.execute-api.{region}.amazonaws.com/{stage}"},
	{"AWS_REGION", "us-east-1", "AWS region"},
	{"API_KEYS", "", "comma-separated publisher API keys; empty: publisher auth off"},
	{"CONNECT_TOKEN_SECRET", "", "HMAC secret of connect tokens; empty: connect auth off"},
	{"MAX_SUBSCRIPTIONS_PER_CONNECTION", "100", "subscriptions one WebSocket connection may hold"},
	{"CALL_TIMEOUT", "10s", "deadline of a publisher call or WebSocket route call whose caller set none (Go duration)"},
	{"HISTORY_TTL", "5m", "how long published messages are kept for recovery and History (Go duration); 0 keeps none"},
	{"RECOVERY_MAX_MESSAGES", "300", "the most messages one recovering subscribe replays; beyond it the client is told to resync"},
	{"CLIENT_PUBLISH_RATE", "10", "client publishes per second one WebSocket connection may make, on average"},
	{"CLIENT_PUBLISH_BURST", "20", "client publishes one WebSocket connection may make at once, beyond CLIENT_PUBLISH_RATE"},
	{"EMULATOR_LATENCY", "0s", "devstack: added to every management API call, as the round trip to AWS (Go duration)"},
	{"EMULATOR_QUOTA", "0", "devstack: account throttle on management API calls, calls/s (AWS: 10000); 0: none"},
	{"EMULATOR_QUOTA_BURST", "", "devstack: calls the throttle allows at once; unset: half of EMULATOR_QUOTA, as on AWS"},
	{"EMULATOR_FAULT_THROTTLE", "0", "devstack: fraction (0-1) of management API calls answered 429"},
	{"EMULATOR_FAULT_SERVER_ERROR", "0", "devstack: fraction (0-1) of management API calls answered 500"},
	{"EMULATOR_FAULT_LOSE_DISCONNECT", "0", "devstack: fraction (0-1) of ended connections whose $disconnect never fires"},
	{"EMULATOR_FAULT_SEED", "0", "devstack: seed of the faults' draws: the same seed, the same faults"},
}

// Load reads the settings through getenv (os.Getenv in mains, a map in
// tests) and validates them.
func Load(getenv func(string) string) (Config, error) {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		for _, s := range Settings {
			if s.Name == name {
				return s.Default
			}
		}
		return ""
	}
	c := Config{
		WSAddr:             get("WS_ADDR"),
		GRPCAddr:           get("GRPC_ADDR"),
		HTTPAddr:           get("HTTP_ADDR"),
		TableName:          get("TABLE_NAME"),
		DynamoDBEndpoint:   get("DYNAMODB_ENDPOINT"),
		APIGWEndpoint:      strings.TrimRight(get("APIGW_ENDPOINT"), "/"),
		Region:             get("AWS_REGION"),
		ConnectTokenSecret: getenv("CONNECT_TOKEN_SECRET"),
	}
	var errs []error
	// Unset turns auth off; set but holding no key is a mistake (a template
	// left half-filled, a stray comma) that must not turn auth off silently.
	if raw := getenv("API_KEYS"); raw != "" {
		for _, k := range strings.Split(raw, ",") {
			if k = strings.TrimSpace(k); k != "" {
				c.APIKeys = append(c.APIKeys, k)
			}
		}
		if len(c.APIKeys) == 0 {
			errs = append(errs, fmt.Errorf("API_KEYS=%q is set but holds no key: list comma-separated keys, or unset it to turn publisher auth off", raw))
		}
	}
	max := get("MAX_SUBSCRIPTIONS_PER_CONNECTION")
	if n, err := strconv.Atoi(max); err != nil || n < 1 || n > 10000 {
		errs = append(errs, fmt.Errorf("MAX_SUBSCRIPTIONS_PER_CONNECTION=%q: want a whole number from 1 to 10000", max))
	} else {
		c.MaxSubscriptions = n
	}
	if d, err := time.ParseDuration(get("CALL_TIMEOUT")); err != nil || d < 100*time.Millisecond || d > 10*time.Minute {
		errs = append(errs, fmt.Errorf("CALL_TIMEOUT=%q: want a Go duration from 100ms to 10m, e.g. 10s", get("CALL_TIMEOUT")))
	} else {
		c.CallTimeout = d
	}
	if d, err := time.ParseDuration(get("HISTORY_TTL")); err != nil || d < 0 || d > 24*time.Hour {
		errs = append(errs, fmt.Errorf("HISTORY_TTL=%q: want a Go duration from 0 to 24h, e.g. 5m", get("HISTORY_TTL")))
	} else {
		c.HistoryTTL = d
	}
	if n, err := strconv.Atoi(get("RECOVERY_MAX_MESSAGES")); err != nil || n < 1 || n > 10000 {
		errs = append(errs, fmt.Errorf("RECOVERY_MAX_MESSAGES=%q: want a whole number from 1 to 10000", get("RECOVERY_MAX_MESSAGES")))
	} else {
		c.RecoveryMaxMessages = n
	}
	if r, err := strconv.ParseFloat(get("CLIENT_PUBLISH_RATE"), 64); err != nil || !(r >= 0.01 && r <= 10000) {
		errs = append(errs, fmt.Errorf("CLIENT_PUBLISH_RATE=%q: want publishes per second from 0.01 to 10000, e.g. 10", get("CLIENT_PUBLISH_RATE")))
	} else {
		c.ClientPublishRate = r
	}
	if n, err := strconv.Atoi(get("CLIENT_PUBLISH_BURST")); err != nil || n < 1 || n > 10000 {
		errs = append(errs, fmt.Errorf("CLIENT_PUBLISH_BURST=%q: want a whole number from 1 to 10000", get("CLIENT_PUBLISH_BURST")))
	} else {
		c.ClientPublishBurst = n
	}
	var emuErrs []error
	c.Emulator, emuErrs = loadEmulator(get, getenv("EMULATOR_QUOTA_BURST") != "")
	errs = append(errs, emuErrs...)
	for _, a := range []struct{ name, v string }{{"WS_ADDR", c.WSAddr}, {"GRPC_ADDR", c.GRPCAddr}, {"HTTP_ADDR", c.HTTPAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want host:port: %v", a.name, a.v, err))
		}
	}
	for _, u := range []struct{ name, v string }{{"DYNAMODB_ENDPOINT", c.DynamoDBEndpoint}, {"APIGW_ENDPOINT", c.APIGWEndpoint}} {
		if u.v == "" {
			continue
		}
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s=%q: want an http(s) URL", u.name, u.v))
		}
	}
	if !validTableName(c.TableName) {
		errs = append(errs, fmt.Errorf("TABLE_NAME=%q: want 3-255 characters of [A-Za-z0-9_.-]", c.TableName))
	}
	if c.ConnectTokenSecret != "" {
		if err := CheckConnectTokenSecret(c.ConnectTokenSecret); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

// loadEmulator reads and checks the EMULATOR_* settings; burstSet tells an
// unset EMULATOR_QUOTA_BURST, which follows EMULATOR_QUOTA, from one set.
func loadEmulator(get func(string) string, burstSet bool) (Emulator, []error) {
	var e Emulator
	var errs []error
	if d, err := time.ParseDuration(get("EMULATOR_LATENCY")); err != nil || d < 0 || d > time.Minute {
		errs = append(errs, fmt.Errorf("EMULATOR_LATENCY=%q: want a Go duration from 0 to 1m, e.g. 20ms", get("EMULATOR_LATENCY")))
	} else {
		e.Latency = d
	}
	if q, err := strconv.ParseFloat(get("EMULATOR_QUOTA"), 64); err != nil || !(q >= 0 && q <= 1e9) {
		errs = append(errs, fmt.Errorf("EMULATOR_QUOTA=%q: want calls per second (AWS's default is 10000), or 0 for no throttle", get("EMULATOR_QUOTA")))
	} else {
		e.Quota = q
	}
	switch raw := get("EMULATOR_QUOTA_BURST"); {
	case !burstSet:
		if e.Quota > 0 {
			e.QuotaBurst = max(1, int(math.Ceil(e.Quota/2)))
		}
	case e.Quota == 0:
		errs = append(errs, fmt.Errorf("EMULATOR_QUOTA_BURST=%q is set without an EMULATOR_QUOTA", raw))
	default:
		if n, err := strconv.Atoi(raw); err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("EMULATOR_QUOTA_BURST=%q: want a whole number of calls, at least 1", raw))
		} else {
			e.QuotaBurst = n
		}
	}
	for _, f := range []struct {
		name string
		to   *float64
	}{
		{"EMULATOR_FAULT_THROTTLE", &e.Throttle},
		{"EMULATOR_FAULT_SERVER_ERROR", &e.ServerError},
		{"EMULATOR_FAULT_LOSE_DISCONNECT", &e.LoseDisconnect},
	} {
		if v, err := strconv.ParseFloat(get(f.name), 64); err != nil || !(v >= 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%s=%q: want a fraction from 0 to 1, e.g. 0.01", f.name, get(f.name)))
		} else {
			*f.to = v
		}
	}
	if e.Throttle+e.ServerError > 1 {
		errs = append(errs, fmt.Errorf("EMULATOR_FAULT_THROTTLE + EMULATOR_FAULT_SERVER_ERROR is %v: more than every call", e.Throttle+e.ServerError))
	}
	if n, err := strconv.ParseUint(get("EMULATOR_FAULT_SEED"), 10, 64); err != nil {
		errs = append(errs, fmt.Errorf("EMULATOR_FAULT_SEED=%q: want a whole number from 0", get("EMULATOR_FAULT_SEED")))
	} else {
		e.Seed = n
	}
	return e, errs
}

// MinSecretLength is the shortest CONNECT_TOKEN_SECRET accepted.
const MinSecretLength = 16

// CheckConnectTokenSecret reports why secret cannot sign connect tokens.
// Load applies it to a set CONNECT_TOKEN_SECRET, and the token command to
// the secret it mints with, so it never mints a token the servers refuse.
func CheckConnectTokenSecret(secret string) error {
	switch {
	case secret == "":
		return errors.New("CONNECT_TOKEN_SECRET is not set: use the same secret as the devstack or the connect Lambda")
	case strings.TrimSpace(secret) == "":
		// Set to blanks, e.g. an empty value quoted in a template: auth
		// must not silently turn off, nor sign with spaces.
		return errors.New("CONNECT_TOKEN_SECRET is set but blank: set a secret of at least 16 characters, or unset it to turn connect auth off")
	case len(secret) < MinSecretLength:
		return fmt.Errorf("CONNECT_TOKEN_SECRET: too short, use at least %d characters (32 random bytes recommended)", MinSecretLength)
	}
	return nil
}

// RequireAPIGW is for binaries that post to connections and cannot guess
// where the management API is.
func (c Config) RequireAPIGW() error {
	if c.APIGWEndpoint == "" {
		return errors.New("APIGW_ENDPOINT is required: the management API base URL (https://{api-id}.execute-api.{region}.amazonaws.com/{stage})")
	}
	return nil
}

func validTableName(s string) bool {
	if len(s) < 3 || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// AWS loads the SDK configuration for c.Region. With local set (devstack and
// tests, whose emulators accept any signature) it signs with fixed dummy
// credentials, so a newcomer needs no AWS account and real keys never reach a
// local emulator.
func (c Config) AWS(ctx context.Context, local bool) (aws.Config, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.Region)}
	if local {
		opts = append(opts, awsconfig.WithCredentialsProvider(localCredentials{}))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS config: %w", err)
	}
	return cfg, nil
}

// localCredentials are what the devstack signs with: emulators ignore them.
type localCredentials struct{}

func (localCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return credentials.NewStaticCredentialsProvider("local", "local", "").Retrieve(context.Background())
}

// Usage renders, for a binary's -h, the settings it reads: each binary
// names its own, so -h lists exactly what changes its behaviour. A name that
// is not in Settings panics: it is a programming error, caught by the
// binary's -h test.
func Usage(binary string, names ...string) string {
	var b strings.Builder
	if len(names) == 0 {
		fmt.Fprintf(&b, "%s reads no environment variables.\n", binary)
		return b.String()
	}
	fmt.Fprintf(&b, "%s is configured by environment variables:\n\n", binary)
	for _, name := range names {
		i := slices.IndexFunc(Settings, func(s Setting) bool { return s.Name == name })
		if i < 0 {
			panic("config.Usage: unknown setting " + name)
		}
		s := Settings[i]
		d := s.Default
		if d == "" {
			d = "(unset)"
		}
		fmt.Fprintf(&b, "  %-34s %-16s %s\n", s.Name, d, s.Help)
	}
	return b.String()
}
