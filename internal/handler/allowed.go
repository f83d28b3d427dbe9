package handler

import "strings"

// allowed reports whether a connection granted patterns may subscribe to
// topic. A pattern is an exact topic name, or a prefix ending in "*" ("*"
// alone grants every topic). nil patterns mean the connection was admitted
// without a grant (connect auth off) and may subscribe to anything; an empty,
// non-nil list grants nothing.
func allowed(patterns []string, topic string) bool {
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(topic, prefix) {
				return true
			}
		} else if p == topic {
			return true
		}
	}
	return false
}
