package wsproto

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The contract's patterns and its bad inputs, judged as a subscription
// target.
func TestValidateTopicOrPattern(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 126)
	for _, tc := range []struct {
		name    string
		ok      bool
		pattern bool
	}{
		{"*", true, true},
		{"a.*", true, true},
		{"orders.eu.*", true, true},
		{"a..*", true, true},
		{"user:7.*", true, true},
		{long + ".*", true, true},   // 128 bytes, a topic's longest
		{long + "a.*", false, true}, // 129
		{"a*", false, true},         // no dot before the star
		{"a.*.b", false, true},      // star inside
		{"*.a", false, true},        // star first
		{"a.**", false, true},       // two stars
		{"**", false, true},         //
		{".*", false, true},         // no name before the dot
		{"-a.*", false, true},       // a name must start alphanumeric
		{"a b.*", false, true},      //
		{"", false, false},          // empty topic
		{"a.b.c", true, false},      // a plain topic
		{"a.", true, false},         // a topic may end with a dot
		{"a.b c", false, false},     //
		{strings.Repeat("a", 129), false, false},
	} {
		err := ValidateTopicOrPattern(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateTopicOrPattern(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopicOrPattern(%q) error %v does not wrap ErrInvalidTopic", tc.name, err)
		}
		if IsPattern(tc.name) != tc.pattern {
			t.Errorf("IsPattern(%q) = %v, want %v", tc.name, !tc.pattern, tc.pattern)
		}
		// A topic rule that let a pattern through would let one be
		// published to, and given a position.
		if tc.pattern && ValidateTopic(tc.name) == nil {
			t.Errorf("ValidateTopic(%q) accepts a pattern", tc.name)
		}
	}
}

// A pattern where a topic is needed is told so, not just "must match".
func TestValidateTopicNamesAPattern(t *testing.T) {
	t.Parallel()
	err := ValidateTopic("orders.*")
	if err == nil || !strings.Contains(err.Error(), "is a pattern") {
		t.Errorf("ValidateTopic(orders.*) = %v, want it to say it is a pattern", err)
	}
}

func TestMatchingPatterns(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 126)
	for _, tc := range []struct {
		topic string
		want  []string
	}{
		{"a.b.c", []string{"a.b.*", "a.*", "*"}},
		{"a", []string{"*"}},
		{"orders.eu", []string{"orders.*", "*"}},
		{"a.", []string{"a.*", "*"}},
		{"a..b", []string{"a..*", "a.*", "*"}},
		{"x:1.y-2_z", []string{"x:1.*", "*"}},
		// A dot at byte 127 would make a 129-byte pattern, which no
		// subscribe accepts: no lookup for it.
		{long + "b.", []string{"*"}},
		{long[1:] + "b.c", []string{long[1:] + "b.*", "*"}},
		{"", nil},
		{"a.*", nil},
		{"bad topic", nil},
	} {
		got := MatchingPatterns(tc.topic)
		if !slices.Equal(got, tc.want) {
			t.Errorf("MatchingPatterns(%q) = %q, want %q", tc.topic, got, tc.want)
		}
		if n := strings.Count(tc.topic, ".") + 1; len(got) > n {
			t.Errorf("MatchingPatterns(%q) = %d patterns, over the topic's depth %d", tc.topic, len(got), n)
		}
	}
}

func TestMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, topic string
		want           bool
	}{
		{"*", "a", true},
		{"*", "a.b.c", true},
		{"a.*", "a.b.c", true},
		{"a.b.*", "a.b.c", true},
		{"a.b.*", "a.c", false},
		{"a.*", "a", false}, // the name alone is not below it
		{"a.*", "ab.c", false},
		{"orders.*", "orders.eu", true},
		{"a*", "ab", false},   // not a pattern
		{"a.*", "a.*", false}, // a pattern is not a topic
		{"a.b.c", "a.b.c", false},
	} {
		if got := Matches(tc.pattern, tc.topic); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.pattern, tc.topic, got, tc.want)
		}
	}
}

// FuzzMatchingPatterns: the lookups a publish makes are exactly the valid
// patterns that match its topic: every one listed matches, and every
// pattern cut from the topic that is valid and matches is listed.
func FuzzMatchingPatterns(f *testing.F) {
	for _, seed := range []string{"a.b.c", "a", "a..b", "a.", strings.Repeat("a.", 64), "*", "a.*"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		got := MatchingPatterns(topic)
		if ValidateTopic(topic) != nil {
			if got != nil {
				t.Fatalf("MatchingPatterns(%q) = %q for an invalid topic", topic, got)
			}
			return
		}
		for _, p := range got {
			if !Matches(p, topic) {
				t.Fatalf("MatchingPatterns(%q) lists %q, which does not match it", topic, p)
			}
		}
		candidates := []string{MatchAll}
		for i := range len(topic) {
			candidates = append(candidates, topic[:i]+"*", topic[:i+1]+".*")
		}
		for _, p := range candidates {
			if Matches(p, topic) && !slices.Contains(got, p) {
				t.Fatalf("MatchingPatterns(%q) = %q misses %q", topic, got, p)
			}
		}
	})
}
