package auth

import (
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef"

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	t.Parallel()
	tokens := NewTokens(secret, func() time.Time { return now })
	valid := jwt.MapClaims{"sub": "user-1", "exp": now.Add(time.Hour).Unix(), "topics": []string{"orders.*", "news"}}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range valid {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	b64 := base64.RawURLEncoding.EncodeToString
	unsignedNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"x","exp":9999999999,"topics":["*"]}`)) + "."
	// HS256 signature but a header claiming RS256: algorithm confusion.
	hsAsRS := func() string {
		good := sign(t, jwt.SigningMethodHS256, []byte(secret), valid)
		parts := strings.Split(good, ".")
		parts[0] = b64([]byte(`{"alg":"RS256","typ":"JWT"}`))
		return strings.Join(parts, ".")
	}()

	for _, tc := range []struct {
		name, token, reason string
	}{
		{"valid", sign(t, jwt.SigningMethodHS256, []byte(secret), valid), ""},
		{"empty", "", "no token"},
		{"garbage", "not.a.jwt", "malformed"},
		// One signed token, other spellings: each must be refused.
		{"a line break in the signature", respell(t, sign(t, jwt.SigningMethodHS256, []byte(secret), valid), func(sig string) string { return sig[:5] + "\r\n" + sig[5:] }), "malformed"},
		{"padding", respell(t, sign(t, jwt.SigningMethodHS256, []byte(secret), valid), func(sig string) string { return sig + "=" }), "malformed"},
		{"stray bits after the signature", respell(t, sign(t, jwt.SigningMethodHS256, []byte(secret), valid), strayBits), "malformed"},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-32-bytes......"), valid), "bad signature"},
		{"alg none", unsignedNone, "algorithm"},
		{"HS512 with the same secret", sign(t, jwt.SigningMethodHS512, []byte(secret), valid), "algorithm"},
		{"RS256 header", hsAsRS, "algorithm"},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", now.Add(-time.Minute).Unix())), "expired"},
		{"no exp", sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", nil)), "no exp"},
		// RFC 7519 NumericDate is a JSON number; golang-jwt alone would
		// read a numeric string as one.
		{"exp a string", sign(t, jwt.SigningMethodHS256, []byte(secret), with("exp", strconv.FormatInt(now.Add(time.Hour).Unix(), 10))), "exp"},
		{"nbf a string", sign(t, jwt.SigningMethodHS256, []byte(secret), with("nbf", strconv.FormatInt(now.Add(-time.Hour).Unix(), 10))), "nbf"},
		{"iat a string", sign(t, jwt.SigningMethodHS256, []byte(secret), with("iat", strconv.FormatInt(now.Add(-time.Hour).Unix(), 10))), "iat"},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, []byte(secret), with("nbf", now.Add(time.Hour).Unix())), "not valid yet"},
		{"no sub", sign(t, jwt.SigningMethodHS256, []byte(secret), with("sub", nil)), "no sub"},
		{"bad topic pattern", sign(t, jwt.SigningMethodHS256, []byte(secret), with("topics", []string{"a b"})), "topics claim"},
		{"star in the middle", sign(t, jwt.SigningMethodHS256, []byte(secret), with("topics", []string{"a*b"})), "topics claim"},
		{"topics not a list", sign(t, jwt.SigningMethodHS256, []byte(secret), with("topics", "news")), "malformed"},
		{"bad publish pattern", sign(t, jwt.SigningMethodHS256, []byte(secret), with("publish", []string{"chat.*", "a b"})), "publish claim"},
		{"publish star in the middle", sign(t, jwt.SigningMethodHS256, []byte(secret), with("publish", []string{"a*b"})), "publish claim"},
		{"publish not a list", sign(t, jwt.SigningMethodHS256, []byte(secret), with("publish", "chat.r1")), "malformed"},
		{"publish too long", sign(t, jwt.SigningMethodHS256, []byte(secret), with("publish", slices.Repeat([]string{"a"}, MaxTokenTopics+1))), "publish claim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := tokens.Verify(tc.token)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "user-1" || !slices.Equal(c.Topics, []string{"orders.*", "news"}) {
					t.Fatalf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Verify = %v, want ErrInvalidToken saying %q", err, tc.reason)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Fatalf("error quotes the token: %v", err)
			}
		})
	}
}

// respell returns token with its signature segment rewritten by f.
func respell(t *testing.T, token string, f func(sig string) string) string {
	t.Helper()
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		t.Fatalf("%q has no signature segment", token)
	}
	return token[:i+1] + f(token[i+1:])
}

// strayBits sets the unused low bits of sig's last character: an HS256
// signature is 32 bytes, 43 characters whose last carries 2 spare bits.
// It decodes to the same bytes unless decoding is strict.
func strayBits(sig string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	return sig[:len(sig)-1] + string(alphabet[last|1])
}

// The publish claim reads like topics: names and "prefix*" patterns, and
// a token without it publishes to nothing (nil, which the connect route
// turns into an empty grant).
func TestPublishClaim(t *testing.T) {
	t.Parallel()
	tokens := NewTokens(secret, func() time.Time { return now })
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		want   []string
	}{
		{"absent", jwt.MapClaims{"sub": "u", "exp": now.Add(time.Hour).Unix()}, nil},
		{"empty", jwt.MapClaims{"sub": "u", "exp": now.Add(time.Hour).Unix(), "publish": []string{}}, []string{}},
		{"names and prefixes", jwt.MapClaims{"sub": "u", "exp": now.Add(time.Hour).Unix(), "publish": []string{"chat.*", "news", "*"}}, []string{"chat.*", "news", "*"}},
	} {
		c, err := tokens.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), tc.claims))
		if err != nil {
			t.Fatalf("%s: Verify: %v", tc.name, err)
		}
		if !slices.Equal(c.Publish, tc.want) || (c.Publish == nil) != (tc.want == nil) {
			t.Errorf("%s: publish = %#v, want %#v", tc.name, c.Publish, tc.want)
		}
	}
	tok, err := tokens.MintGrant("dev", Grant{Topics: []string{"chat.*"}, Publish: []string{"chat.r1"}}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := tokens.Verify(tok); err != nil || !slices.Equal(c.Publish, []string{"chat.r1"}) || !slices.Equal(c.Topics, []string{"chat.*"}) {
		t.Errorf("Verify(MintGrant) = %+v, %v", c, err)
	}
	if _, err := tokens.MintGrant("dev", Grant{Publish: []string{"a b"}}, time.Hour, now); err == nil {
		t.Errorf("MintGrant with an invalid publish pattern succeeded")
	}
	// Mint grants no publish: a token minted for subscribing alone.
	tok, _ = tokens.Mint("dev", []string{"*"}, time.Hour, now)
	if c, err := tokens.Verify(tok); err != nil || c.Publish != nil {
		t.Errorf("Verify(Mint) publish = %#v, %v; want none", c.Publish, err)
	}
}

func TestMintVerifies(t *testing.T) {
	t.Parallel()
	tokens := NewTokens(secret, func() time.Time { return now })
	tok, err := tokens.Mint("dev", []string{"*"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tokens.Verify(tok)
	if err != nil || c.Subject != "dev" || !slices.Equal(c.Topics, []string{"*"}) {
		t.Fatalf("Verify(Mint) = %+v, %v", c, err)
	}
	later := NewTokens(secret, func() time.Time { return now.Add(2 * time.Hour) })
	if _, err := later.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a token past its ttl verified: %v", err)
	}
	for _, bad := range []struct {
		sub    string
		topics []string
		ttl    time.Duration
	}{{"", nil, time.Hour}, {"x", []string{"bad topic"}, time.Hour}, {"x", nil, 0}} {
		if _, err := tokens.Mint(bad.sub, bad.topics, bad.ttl, now); err == nil {
			t.Errorf("Mint(%q, %q, %v) succeeded", bad.sub, bad.topics, bad.ttl)
		}
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	keys := NewAPIKeys([]string{"k-one", "k-two"})
	for header, want := range map[string]bool{
		"Bearer k-one":  true,
		"Bearer k-two":  true,
		"bearer k-two":  true,
		"Bearer k-on":   false,
		"Bearer k-one2": false,
		"Bearer ":       false,
		"k-one":         false,
		"Basic k-one":   false,
		"":              false,
	} {
		if got := keys.CheckAuthorization(header); got != want {
			t.Errorf("CheckAuthorization(%q) = %v, want %v", header, got, want)
		}
	}
	if NewAPIKeys(nil).CheckAuthorization("Bearer anything") {
		t.Error("an empty key set accepted a key")
	}
}
