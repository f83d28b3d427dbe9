package wsproto

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseTopics: any frame either yields valid, unique topics within the
// limit or a FrameError with a code — never a panic, never a topic or
// pattern that ValidateTopicOrPattern would refuse.
func FuzzParseTopics(f *testing.F) {
	for _, seed := range []string{
		`{"action":"subscribe","topics":["a","b"]}`,
		`{"action":"subscribe","topic":"a"}`,
		`{"action":"unsubscribe","topics":["a","a","b"]}`,
		`{"action":"subscribe","topics":"a"}`,
		`{"action":"subscribe","topics":[1,2]}`,
		`{"action":"subscribe","topics":["\u0000"]}`,
		`{"topics":[[[[[[]]]]]]}`,
		`not json`, `[]`, `null`, ``, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		topics, err := ParseTopics(body)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Code == "" || fe.Message == "" {
				t.Fatalf("ParseTopics(%q) error %v is not a FrameError with code and message", body, err)
			}
			if topics != nil {
				t.Fatalf("ParseTopics(%q) returned topics with an error", body)
			}
			return
		}
		if len(topics) == 0 || len(topics) > MaxTopicsPerRequest {
			t.Fatalf("ParseTopics(%q) = %d topics", body, len(topics))
		}
		seen := map[string]bool{}
		for _, topic := range topics {
			if ValidateTopicOrPattern(topic) != nil || seen[topic] {
				t.Fatalf("ParseTopics(%q) returned invalid or duplicate topic %q", body, topic)
			}
			seen[topic] = true
		}
	})
}

// FuzzAction: route selection agrees with a plain decode of the frame.
func FuzzAction(f *testing.F) {
	for _, seed := range []string{`{"action":"ping"}`, `{"action":1}`, `{"action":null}`, `{"Action":"ping"}`, `x`, `{"action":"a","action":"b"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := Action(body)
		var v map[string]any
		want := ""
		if json.Unmarshal(body, &v) == nil {
			want, _ = v["action"].(string)
		}
		if got != want {
			t.Fatalf("Action(%q) = %q, a decode says %q", body, got, want)
		}
	})
}

// FuzzValidateTopic: whatever it accepts is what the contract's pattern
// describes, checked here without the regexp.
func FuzzValidateTopic(f *testing.F) {
	for _, seed := range []string{"a", "orders.eu:1", "-x", "", "a b", "ä", "a\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ok := len(name) >= 1 && len(name) <= 128
		for i := 0; ok && i < len(name); i++ {
			c := name[i]
			alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
			ok = alnum || (i > 0 && (c == '.' || c == '_' || c == ':' || c == '-'))
		}
		if err := ValidateTopic(name); (err == nil) != ok {
			t.Fatalf("ValidateTopic(%q) = %v, want ok=%v", name, err, ok)
		}
	})
}
