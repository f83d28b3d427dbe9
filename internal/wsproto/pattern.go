package wsproto

import (
	"fmt"
	"regexp"
	"strings"
)

// A subscribe or unsubscribe may name a pattern instead of a topic: "*"
// (every topic) or a topic name followed by ".*" (every topic that starts
// with that name and a dot). Published topics never contain "*", so a
// name holding one is a pattern or a mistake, never a topic.
//
// Patterns are matched from the published topic's side: a publish to
// "a.b.c" reads the subscribers of "a.b.c" and of each pattern that
// matches it ("a.b.*", "a.*", "*"), one lookup per level, rather than
// testing every pattern anyone holds against the topic.

var patternRule = regexp.MustCompile(`^(\*|[A-Za-z0-9][A-Za-z0-9._:-]{0,125}\.\*)$`)

// MatchAll is the pattern every topic matches.
const MatchAll = "*"

// IsPattern reports whether name is meant as a pattern: it holds a "*",
// which no topic does. It says nothing of whether the pattern is valid.
func IsPattern(name string) bool { return strings.Contains(name, "*") }

// ValidatePattern reports whether name is a valid pattern, with a message a
// human can act on; its errors wrap ErrInvalidTopic, as a bad topic's do,
// since a client that sends either gets the same "invalid_topic".
func ValidatePattern(name string) error {
	if name == "" {
		return fmt.Errorf("%w: pattern is empty", ErrInvalidTopic)
	}
	if !patternRule.MatchString(name) {
		return fmt.Errorf(`%w: %q is not a pattern: use "*" or a topic name followed by ".*" (%s)`, ErrInvalidTopic, Clip(name, 40), patternRule)
	}
	return nil
}

// ValidateTopicOrPattern accepts what a subscription may name: a topic or
// a pattern. A name with a "*" is judged as a pattern, so "a*" is told it
// is a bad pattern rather than a bad topic.
func ValidateTopicOrPattern(name string) error {
	if IsPattern(name) {
		return ValidatePattern(name)
	}
	return ValidateTopic(name)
}

// PatternPrefix is what every topic a valid pattern matches starts with:
// "orders." for "orders.*", "" for "*".
func PatternPrefix(pattern string) string { return strings.TrimSuffix(pattern, "*") }

// Matches reports whether topic is one of the topics pattern stands for.
func Matches(pattern, topic string) bool {
	return ValidatePattern(pattern) == nil && !IsPattern(topic) && strings.HasPrefix(topic, PatternPrefix(pattern))
}

// MatchingPatterns lists every valid pattern that matches topic, the
// deepest first: "a.b.c" gives "a.b.*", "a.*", "*". A topic of depth d
// (d dot-separated parts) has at most d of them, so a publish reads at
// most d+1 subscriber lists. A dot too far into a long topic for its
// pattern to fit the pattern rule's length yields no pattern: nobody can
// have subscribed to it. nil for anything that is not a valid topic.
func MatchingPatterns(topic string) []string {
	if ValidateTopic(topic) != nil {
		return nil
	}
	var out []string
	for i := len(topic) - 1; i > 0; i-- {
		if topic[i] != '.' {
			continue
		}
		if p := topic[:i+1] + "*"; patternRule.MatchString(p) {
			out = append(out, p)
		}
	}
	return append(out, MatchAll)
}
