package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// APIKeys is the set of keys accepted from publishers (API_KEYS).
type APIKeys struct {
	// Keys are stored hashed: comparing fixed-length digests in constant
	// time hides both a key's content and its length.
	digests [][sha256.Size]byte
}

// NewAPIKeys returns the set of keys; an empty set accepts nothing.
func NewAPIKeys(keys []string) *APIKeys {
	a := &APIKeys{}
	for _, k := range keys {
		a.digests = append(a.digests, sha256.Sum256([]byte(k)))
	}
	return a
}

// CheckAuthorization reports whether an Authorization value is
// "Bearer <key>" with one of the keys. Every key is compared, so the time
// taken says nothing about which key came close.
func (a *APIKeys) CheckAuthorization(header string) bool {
	scheme, key, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(key)))
	match := 0
	for i := range a.digests {
		match |= subtle.ConstantTimeCompare(d[:], a.digests[i][:])
	}
	return match == 1
}
