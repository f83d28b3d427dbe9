package handler

import (
	"testing"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

func TestAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		grants []string
		topic  string
		want   bool
	}{
		{"nil grants any topic", nil, "orders.1", true},
		{"empty grants nothing", []string{}, "orders.1", false},
		{"star grants any topic", []string{"*"}, "orders.1", true},
		{"exact name", []string{"news"}, "news", true},
		{"exact name is not a prefix", []string{"news"}, "news.eu", false},
		{"name does not match a longer pattern", []string{"news.eu"}, "news", false},
		{"prefix", []string{"orders.*"}, "orders.42", true},
		{"prefix needs its separator", []string{"orders.*"}, "ordersX", false},
		{"prefix matches itself only with the separator", []string{"orders.*"}, "orders", false},
		{"prefix without separator", []string{"user:7*"}, "user:71", true},
		{"any of several", []string{"news", "orders.*"}, "orders.1", true},
		{"none of several", []string{"news", "orders.*"}, "billing", false},
		{"star inside is literal", []string{"a*b"}, "axb", false},
		{"star inside matches itself", []string{"a*b"}, "a*b", true},
		// Patterns: a grant must cover every topic the pattern matches.
		{"star grants the star pattern", []string{"*"}, "*", true},
		{"star grants any pattern", []string{"*"}, "orders.eu.*", true},
		{"prefix grants its own pattern", []string{"orders.*"}, "orders.*", true},
		{"prefix grants a deeper pattern", []string{"orders.*"}, "orders.eu.*", true},
		{"prefix still grants its topics", []string{"orders.*"}, "orders.eu", true},
		{"exact grant does not allow the wider pattern", []string{"orders.eu"}, "orders.*", false},
		{"exact grant does not allow its own pattern", []string{"orders.eu"}, "orders.eu.*", false},
		{"deeper prefix does not allow a wider pattern", []string{"orders.eu.*"}, "orders.*", false},
		{"prefix does not allow the star pattern", []string{"orders.*"}, "*", false},
		{"prefix does not allow a sibling pattern", []string{"orders.*"}, "ordersx.*", false},
		{"prefix without separator covers a pattern below it", []string{"user:7*"}, "user:71.*", true},
		{"prefix without separator needs the pattern below it", []string{"user:71*"}, "user:7.*", false},
		{"nil grants any pattern", nil, "*", true},
		{"empty grants no pattern", []string{}, "a.*", false},
		{"any of several covers", []string{"news", "orders.*"}, "orders.eu.*", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := allowed(tt.grants, tt.topic); got != tt.want {
				t.Errorf("allowed(%q, %q) = %v, want %v", tt.grants, tt.topic, got, tt.want)
			}
		})
	}
}

// FuzzAllowedPatternCoversItsTopics: a pattern is allowed only if every
// topic it matches would be: checked on the topics the pattern's prefix
// makes with a few endings, which include the shortest and any character.
func FuzzAllowedPatternCoversItsTopics(f *testing.F) {
	for _, seed := range [][2]string{{"orders.*", "orders.eu.*"}, {"*", "*"}, {"user:7*", "user:71.*"}, {"orders.eu", "orders.*"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, grant, pattern string) {
		if wsproto.ValidatePattern(pattern) != nil || !allowed([]string{grant}, pattern) {
			return
		}
		prefix := wsproto.PatternPrefix(pattern)
		for _, end := range []string{"", "x", "0", "-", ".", ":z", "_"} {
			topic := prefix + end
			if wsproto.Matches(pattern, topic) && !allowed([]string{grant}, topic) {
				t.Fatalf("grant %q allows pattern %q but not its topic %q", grant, pattern, topic)
			}
		}
	})
}
