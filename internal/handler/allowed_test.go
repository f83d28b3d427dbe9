package handler

import "testing"

func TestAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		patterns []string
		topic    string
		want     bool
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := allowed(tt.patterns, tt.topic); got != tt.want {
				t.Errorf("allowed(%q, %q) = %v, want %v", tt.patterns, tt.topic, got, tt.want)
			}
		})
	}
}
