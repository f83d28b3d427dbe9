package handler

import (
	"strings"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// allowed reports whether a connection granted grants may subscribe to
// name, a topic or a pattern. A grant is an exact topic name, or a prefix
// ending in "*" ("*" alone grants every topic). nil grants mean the
// connection was admitted without a grant (connect auth off) and may
// subscribe to anything; an empty, non-nil list grants nothing.
//
// A pattern needs one grant that covers every topic it can match: every
// such topic starts with the pattern's prefix ("orders.eu." for
// "orders.eu.*", "" for "*"), so a prefix grant covers the pattern exactly
// when that prefix starts with the grant's. "orders.*" thus allows
// "orders.*" and "orders.eu.*"; an exact grant never allows a pattern,
// which matches topics yet unnamed.
func allowed(grants []string, name string) bool {
	if grants == nil {
		return true
	}
	covered := name
	if wsproto.IsPattern(name) {
		covered = wsproto.PatternPrefix(name)
	}
	for _, g := range grants {
		if prefix, ok := strings.CutSuffix(g, "*"); ok {
			if strings.HasPrefix(covered, prefix) {
				return true
			}
		} else if g == name {
			return true
		}
	}
	return false
}
