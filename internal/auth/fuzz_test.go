package auth

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerify: no input panics, and nothing verifies unless it carries a
// valid HS256 signature by the secret (which random input cannot forge).
func FuzzVerify(f *testing.F) {
	tokens := NewTokens(secret, func() time.Time { return now })
	good, err := tokens.Mint("seed", []string{"orders.*"}, time.Hour, now)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, good + "x", good[:len(good)-3], "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := tokens.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if token != good || c.Subject != "seed" {
			t.Fatalf("Verify accepted %q as %+v", token, c)
		}
	})
}
