// Package auth holds wsgateway's two credentials: connect tokens that let a
// browser open a WebSocket and subscribe to some topics, and API keys that
// let a backend publish.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// ErrInvalidToken wraps every reason a connect token is refused. The
// wrapped detail never quotes the token, so it is safe to log.
var ErrInvalidToken = errors.New("invalid connect token")

// MaxTokenTopics bounds the topics claim, and the publish claim, so a
// token cannot make every subscribe or publish check arbitrarily slow.
const MaxTokenTopics = 100

// Claims are a connect token's claims.
type Claims struct {
	jwt.RegisteredClaims
	// Topics are topic names or prefixes ending in "*" ("orders.*", "*")
	// the connection may subscribe to.
	Topics []string `json:"topics"`
	// Publish are topic names or prefixes ending in "*" the connection
	// may publish to, as Topics are for subscribing. Absent or empty, it
	// may publish to none.
	Publish []string `json:"publish,omitempty"`
}

// notNumericDateError: exp, nbf and iat are RFC 7519 NumericDates, JSON
// numbers. golang-jwt would also read "1767225600" (a string) as one; a
// token that does not follow the format is not trusted to mean what it
// seems to.
type notNumericDateError struct{ claim string }

func (e *notNumericDateError) Error() string {
	return e.claim + " claim is not a number"
}

// UnmarshalJSON refuses time claims that are not JSON numbers, then
// decodes as usual.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			continue
		}
		if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
			return &notNumericDateError{name}
		}
	}
	type plain Claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// Tokens mints and verifies connect tokens: JWTs signed HS256 with one
// shared secret (CONNECT_TOKEN_SECRET).
type Tokens struct {
	secret []byte
	parser *jwt.Parser
}

// NewTokens returns Tokens for secret. now is the clock exp is checked
// against (time.Now outside tests).
func NewTokens(secret string, now func() time.Time) *Tokens {
	return &Tokens{
		secret: []byte(secret),
		parser: jwt.NewParser(
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(now),
			jwt.WithLeeway(30*time.Second),
			// Stray bits after a segment's last character are refused, so
			// that a signed token has one spelling (see Verify).
			jwt.WithStrictDecoding(),
		),
	}
}

// Verify checks token's signature, algorithm, expiry and claims and
// returns the claims.
func (t *Tokens) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, fmt.Errorf("%w: no token query parameter", ErrInvalidToken)
	}
	// A token is three base64url segments joined by dots. Go's base64
	// decoder skips \r and \n, so without this check one signed token could
	// be written many ways, and a token refused by its text (a deny list, a
	// log search) would still get in in another spelling.
	if i := strings.IndexFunc(token, notTokenRune); i >= 0 {
		return Claims{}, fmt.Errorf("%w: malformed: a character outside base64url and '.' at byte %d", ErrInvalidToken, i)
	}
	var c Claims
	_, err := t.parser.ParseWithClaims(token, &c, t.key)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %s", ErrInvalidToken, reason(err))
	}
	if c.Subject == "" {
		return Claims{}, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	if err := validatePatterns("topics", c.Topics); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if err := validatePatterns("publish", c.Publish); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return c, nil
}

// notTokenRune reports whether r cannot appear in a compact JWS: base64url
// without padding, and the dots between the segments.
func notTokenRune(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.')
}

// errAlgorithm: only HS256 is accepted. "none", RS256 with the secret
// passed off as a public key, and every other algorithm are refused before
// any signature check.
var errAlgorithm = errors.New("algorithm not allowed (HS256 only)")

func (t *Tokens) key(tok *jwt.Token) (any, error) {
	if tok.Method != jwt.SigningMethodHS256 {
		return nil, errAlgorithm
	}
	return t.secret, nil
}

// Mint signs a token for sub that may subscribe to topics until ttl from
// now, and publish to nothing. It validates what it signs, so a minted
// token always verifies.
func (t *Tokens) Mint(sub string, topics []string, ttl time.Duration, now time.Time) (string, error) {
	return t.MintGrant(sub, Grant{Topics: topics}, ttl, now)
}

// Grant is what a minted token lets its connection do: subscribe to
// Topics, publish to Publish (both topic names or "prefix*" patterns).
type Grant struct {
	Topics, Publish []string
}

// MintGrant signs a token for sub with g's claims until ttl from now. It
// validates what it signs, so a minted token always verifies.
func (t *Tokens) MintGrant(sub string, g Grant, ttl time.Duration, now time.Time) (string, error) {
	if sub == "" {
		return "", errors.New("mint: empty subject")
	}
	if ttl <= 0 {
		return "", errors.New("mint: ttl must be positive")
	}
	if err := validatePatterns("topics", g.Topics); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	if err := validatePatterns("publish", g.Publish); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Topics:  g.Topics,
		Publish: g.Publish,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
}

// validatePatterns accepts topic names and prefixes ending in "*" in the
// claim named claim. An empty list is valid and grants nothing.
func validatePatterns(claim string, patterns []string) error {
	if len(patterns) > MaxTokenTopics {
		return fmt.Errorf("%s claim has %d entries, at most %d", claim, len(patterns), MaxTokenTopics)
	}
	for _, p := range patterns {
		if p == "*" {
			continue
		}
		name, wildcard := strings.CutSuffix(p, "*")
		if wildcard {
			// A prefix need not be a whole topic ("orders." is fine),
			// so check it as the start of one.
			name += "x"
		}
		if err := wsproto.ValidateTopic(name); err != nil {
			return fmt.Errorf("%s claim: %q is neither a topic name nor a prefix ending in *", claim, p)
		}
	}
	return nil
}

// reason turns jwt's errors into a short phrase without token content.
func reason(err error) string {
	if e, ok := errors.AsType[*notNumericDateError](err); ok {
		return e.Error() // names the claim, not its value
	}
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "no exp claim"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, errAlgorithm):
		return errAlgorithm.Error()
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	default:
		return "rejected"
	}
}
