package wsproto

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestValidateTopic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"orders.eu-west:1_x", true},
		{"9lives", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"-dash-first", false},
		{".dot-first", false},
		{"has space", false},
		{"slash/inside", false},
		{"star*", false},
		{"ünïcode", false},
		{"new\nline", false},
	} {
		err := ValidateTopic(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateTopic(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) error %v does not wrap ErrInvalidTopic", tc.name, err)
		}
	}
}

func TestAction(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"action":"subscribe","topics":["a"]}`: "subscribe",
		`{"action":"ping"}`:                     "ping",
		`{"action":7}`:                          "",
		`{"Action":"ping"}`:                     "",
		`{"topics":["a"]}`:                      "",
		`["action"]`:                            "",
		`not json`:                              "",
		``:                                      "",
		`"subscribe"`:                           "",
	} {
		if got := Action([]byte(body)); got != want {
			t.Errorf("Action(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestParseTopics(t *testing.T) {
	t.Parallel()
	many := make([]string, MaxTopicsPerRequest+1)
	for i := range many {
		many[i] = "t" + strings.Repeat("x", i%5)
	}
	manyJSON, _ := json.Marshal(map[string]any{"action": "subscribe", "topics": many})
	for _, tc := range []struct {
		name, body string
		want       []string
		code       string
		names      string // the field an error message must name
	}{
		{"list", `{"action":"subscribe","topics":["a","b"]}`, []string{"a", "b"}, "", ""},
		{"single", `{"action":"subscribe","topic":"a"}`, []string{"a"}, "", ""},
		{"both, deduplicated", `{"action":"subscribe","topic":"a","topics":["b","a","b"]}`, []string{"a", "b"}, "", ""},
		{"single with an empty list", `{"action":"subscribe","topic":"a","topics":[]}`, []string{"a"}, "", ""},
		{"no topics", `{"action":"subscribe"}`, nil, CodeInvalidTopic, ""},
		{"empty list is a malformed frame, not a bad name", `{"action":"subscribe","topics":[]}`, nil, CodeBadRequest, `"topics"`},
		{"one bad topic refuses all", `{"action":"subscribe","topics":["a","b c"]}`, nil, CodeInvalidTopic, ""},
		{"topics not a list", `{"action":"subscribe","topics":"a"}`, nil, CodeBadRequest, `"topics"`},
		{"topics not strings", `{"action":"subscribe","topics":["a",7]}`, nil, CodeBadRequest, `"topics"`},
		{"topic not a string", `{"action":"subscribe","topic":["a"]}`, nil, CodeBadRequest, `"topic"`},
		{"not an object", `[1,2]`, nil, CodeBadRequest, ""},
		{"not JSON", `subscribe a`, nil, CodeBadRequest, ""},
		{"too many", string(manyJSON), nil, CodeLimitExceeded, ""},
		{"patterns beside topics", `{"action":"subscribe","topics":["a.b.c","a.*","*","a.*"]}`, []string{"a.b.c", "a.*", "*"}, "", ""},
		{"a pattern alone", `{"action":"unsubscribe","topic":"*"}`, []string{"*"}, "", ""},
		{"star without its dot", `{"action":"subscribe","topics":["a.*","a*"]}`, nil, CodeInvalidTopic, "pattern"},
		{"star inside", `{"action":"subscribe","topics":["a.*.b"]}`, nil, CodeInvalidTopic, "pattern"},
		{"star first", `{"action":"subscribe","topics":["*.a"]}`, nil, CodeInvalidTopic, "pattern"},
		{"two stars", `{"action":"subscribe","topics":["a.**"]}`, nil, CodeInvalidTopic, "pattern"},
		{"an empty name among patterns", `{"action":"subscribe","topics":["*",""]}`, nil, CodeInvalidTopic, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTopics([]byte(tc.body))
			var fe *FrameError
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("error %v, want %v", err, tc.want)
			case tc.code != "" && (!errors.As(err, &fe) || fe.Code != tc.code || fe.Message == ""):
				t.Fatalf("error %v, want a FrameError with code %s and a message", err, tc.code)
			case !slices.Equal(got, tc.want):
				t.Fatalf("topics %v, want %v", got, tc.want)
			}
			if fe == nil {
				return
			}
			if !strings.Contains(fe.Message, tc.names) {
				t.Errorf("message %q does not name the field %s", fe.Message, tc.names)
			}
			// The client knows its frame, not the server's Go types.
			for _, internal := range []string{"Go ", "struct", "[]string", "unmarshal", "wsproto"} {
				if strings.Contains(fe.Message, internal) {
					t.Errorf("message %q leaks the decoder's terms (%q)", fe.Message, internal)
				}
			}
		})
	}
}

func TestFrames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got  []byte
		want string
	}{
		{Subscribed([]string{"a", "b"}, map[string]Position{"a": {"E", 45}, "b": {"E2", 0}}, nil),
			`{"type":"subscribed","topics":["a","b"],"positions":{"a":{"epoch":"E","offset":45},"b":{"epoch":"E2","offset":0}}}`},
		{Subscribed([]string{"a"}, map[string]Position{"a": {"E", 45}}, map[string]bool{"a": true}),
			`{"type":"subscribed","topics":["a"],"positions":{"a":{"epoch":"E","offset":45}},"recovered":{"a":true}}`},
		// "recover": {} was given, so "recovered" is there, empty.
		{Subscribed([]string{"a"}, map[string]Position{"a": {"E", 0}}, map[string]bool{}),
			`{"type":"subscribed","topics":["a"],"positions":{"a":{"epoch":"E","offset":0}},"recovered":{}}`},
		{Unsubscribed([]string{"a"}), `{"type":"unsubscribed","topics":["a"]}`},
		{PongFrame(), `{"type":"pong"}`},
		{Error(CodeForbidden, "no"), `{"type":"error","code":"forbidden","message":"no"}`},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("frame %s, want %s", tc.got, tc.want)
		}
	}
}

func TestEncodeMessage(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 12, 0, 0, 5, time.FixedZone("CET", 3600))
	got, err := EncodeMessage(Message{Topic: "a", ID: "m1", Data: json.RawMessage(`{"x":[1,2]}`), Attributes: map[string]string{"k": "v"}, PublishTime: at})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"message","topic":"a","id":"m1","data":{"x":[1,2]},"attributes":{"k":"v"},"publishTime":"2026-11-27T11:00:00.000000005Z"}`
	if string(got) != want {
		t.Errorf("EncodeMessage = %s\nwant            %s", got, want)
	}
}

// TestClip: echoed input stays within n bytes and valid UTF-8, whatever
// byte n falls on.
func TestClip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 40, "short"},
		{"abcdef", 6, "abcdef"},
		{"abcdef", 3, "abc…"},
		{"éééé", 3, "é…"}, // byte 3 is inside the second é
		{"éééé", 4, "éé…"},
		{"€x", 1, "…"}, // no whole rune fits
	} {
		got := Clip(tc.s, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
