package wsproto

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseSubscribeRecover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		want       map[string]Position
		noRecover  bool // want a nil Recover: the frame has none
	}{
		{"no recover", `{"action":"subscribe","topics":["a","b"]}`, nil, true},
		{"empty recover is given, and answered", `{"action":"subscribe","topics":["a"],"recover":{}}`, map[string]Position{}, false},
		{"one of two topics", `{"action":"subscribe","topics":["a","b"],"recover":{"a":{"epoch":"E","offset":41}}}`,
			map[string]Position{"a": {"E", 41}}, false},
		{"offset 0: nothing seen yet", `{"action":"subscribe","topic":"a","recover":{"a":{"offset":0,"epoch":"E"}}}`,
			map[string]Position{"a": {"E", 0}}, false},
		{"offset 2^53 is the largest", `{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":9007199254740992}}}`,
			map[string]Position{"a": {"E", 1 << 53}}, false},
		{"an epoch of MaxEpochBytes", `{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"` + strings.Repeat("e", MaxEpochBytes) + `","offset":1}}}`,
			map[string]Position{"a": {strings.Repeat("e", MaxEpochBytes), 1}}, false},
		{"a differently cased key is not recover", `{"action":"subscribe","topics":["a"],"Recover":{"a":1}}`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSubscribe([]byte(tc.body))
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if (got.Recover == nil) != tc.noRecover || !maps.Equal(got.Recover, tc.want) {
				t.Errorf("Recover = %#v, want %#v", got.Recover, tc.want)
			}
			if len(got.Topics) == 0 {
				t.Errorf("no topics")
			}
		})
	}
}

// Every malformed "recover" is a bad_request whose message names the
// field at fault, in the frame's terms.
func TestParseSubscribeBadRecover(t *testing.T) {
	t.Parallel()
	entry := func(e string) string { return `{"action":"subscribe","topics":["a","b"],"recover":{"a":` + e + `}}` }
	for _, tc := range []struct {
		name, body string
		names      string // a substring of the message: the field
	}{
		{"null", `{"action":"subscribe","topics":["a"],"recover":null}`, `"recover" must be an object`},
		{"a list", `{"action":"subscribe","topics":["a"],"recover":[{"epoch":"E","offset":1}]}`, `"recover" must be an object`},
		{"a string", `{"action":"subscribe","topics":["a"],"recover":"a"}`, `"recover" must be an object`},
		{"a topic not in topics", `{"action":"subscribe","topics":["a"],"recover":{"b":{"epoch":"E","offset":1}}}`, `recover["b"] names a topic not in "topics"`},
		{"an invalid topic name", `{"action":"subscribe","topics":["a"],"recover":{"b c":{"epoch":"E","offset":1}}}`, `recover["b c"] names a topic not in "topics"`},
		{"a topic twice", `{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":1},"a":{"epoch":"E","offset":2}}}`, `recover["a"] is given twice`},
		{"entry not an object", entry(`41`), `recover["a"] must be an object`},
		{"entry null", entry(`null`), `recover["a"] must be an object`},
		{"unknown field", entry(`{"epoch":"E","offset":1,"since":1}`), `recover["a"] has an unknown field "since"`},
		{"differently cased field", entry(`{"Epoch":"E","offset":1}`), `recover["a"] has an unknown field "Epoch"`},
		{"no epoch", entry(`{"offset":1}`), `recover["a"].epoch is missing`},
		{"no offset", entry(`{"epoch":"E"}`), `recover["a"].offset is missing`},
		{"epoch twice", entry(`{"epoch":"E","epoch":"F","offset":1}`), `recover["a"].epoch is given twice`},
		{"offset twice", entry(`{"epoch":"E","offset":1,"offset":2}`), `recover["a"].offset is given twice`},
		{"epoch a number", entry(`{"epoch":7,"offset":1}`), `recover["a"].epoch must be a string`},
		{"epoch null", entry(`{"epoch":null,"offset":1}`), `recover["a"].epoch must be a string`},
		{"epoch empty", entry(`{"epoch":"","offset":1}`), `recover["a"].epoch must be a string`},
		{"epoch longer than any", entry(`{"epoch":"` + strings.Repeat("e", MaxEpochBytes+1) + `","offset":1}`), `recover["a"].epoch must be a string`},
		{"offset negative", entry(`{"epoch":"E","offset":-1}`), `recover["a"].offset must be a whole number ≥ 0`},
		{"offset minus zero", entry(`{"epoch":"E","offset":-0}`), `recover["a"].offset must be a whole number ≥ 0`},
		{"offset fractional", entry(`{"epoch":"E","offset":41.5}`), `recover["a"].offset must be a whole number ≥ 0`},
		{"offset with a fraction part", entry(`{"epoch":"E","offset":41.0}`), `recover["a"].offset must be a whole number ≥ 0`},
		{"offset exponent", entry(`{"epoch":"E","offset":4e1}`), `recover["a"].offset must be a whole number ≥ 0`},
		{"offset a string", entry(`{"epoch":"E","offset":"41"}`), `recover["a"].offset must be a whole number ≥ 0`},
		{"offset null", entry(`{"epoch":"E","offset":null}`), `recover["a"].offset must be a whole number ≥ 0`},
		{"offset 2^53+1", entry(`{"epoch":"E","offset":9007199254740993}`), `recover["a"].offset must be at most 2^53`},
		{"offset past uint64", entry(`{"epoch":"E","offset":184467440737095516160}`), `recover["a"].offset must be at most 2^53`},
		{"a long key is clipped", `{"action":"subscribe","topics":["a"],"recover":{"` + strings.Repeat("k", 200) + `":{}}}`, `recover["` + strings.Repeat("k", 40) + `…"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSubscribe([]byte(tc.body))
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Code != CodeBadRequest {
				t.Fatalf("ParseSubscribe = %+v, %v; want a %s FrameError", got, err, CodeBadRequest)
			}
			if got.Topics != nil || got.Recover != nil {
				t.Errorf("returned %+v with the error, want nothing", got)
			}
			if !strings.Contains(fe.Message, tc.names) {
				t.Errorf("message %q does not name the field: want %q in it", fe.Message, tc.names)
			}
			for _, internal := range []string{"Go ", "struct", "uint64", "unmarshal", "wsproto", "json:"} {
				if strings.Contains(fe.Message, internal) {
					t.Errorf("message %q leaks the decoder's terms (%q)", fe.Message, internal)
				}
			}
			// The message is sent in a JSON frame, so it must encode.
			if _, err := json.Marshal(fe.Message); err != nil {
				t.Error(err)
			}
		})
	}
}

// The topics are judged before "recover": a frame with bad topics keeps
// the error ParseTopics gives it.
func TestParseSubscribeTopicsFirst(t *testing.T) {
	t.Parallel()
	for body, code := range map[string]string{
		`{"action":"subscribe","topics":["b c"],"recover":7}`: CodeInvalidTopic,
		`{"action":"subscribe","recover":{}}`:                 CodeInvalidTopic,
		`{"action":"subscribe","topics":"a","recover":{}}`:    CodeBadRequest,
	} {
		_, err := ParseSubscribe([]byte(body))
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Code != code {
			t.Errorf("ParseSubscribe(%s) = %v, want %s", body, err, code)
		}
	}
	got, err := ParseSubscribe([]byte(`{"action":"subscribe","topic":"a","topics":["b","a"],"recover":{"b":{"epoch":"E","offset":3}}}`))
	if err != nil || !slices.Equal(got.Topics, []string{"a", "b"}) {
		t.Errorf("ParseSubscribe = %+v, %v; want topics [a b] as ParseTopics gives them", got, err)
	}
}

// FuzzParseSubscribe: any frame yields either a request whose every
// recover entry is a topic of the frame with a position in range, or a
// FrameError; never a panic.
func FuzzParseSubscribe(f *testing.F) {
	for _, seed := range []string{
		`{"action":"subscribe","topics":["a","b"],"recover":{"a":{"epoch":"E","offset":41}}}`,
		`{"action":"subscribe","topics":["a"],"recover":{}}`,
		`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":-1}}}`,
		`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":1e400}}}`,
		`{"action":"subscribe","topics":["a"],"recover":{"a":{"epoch":"E","offset":1,"x":[{}]}}}`,
		`{"action":"subscribe","topics":["a"],"recover":null}`,
		`{"action":"subscribe","topics":["a"],"recover":{"a":{},"a":{}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseSubscribe(body)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Code == "" || fe.Message == "" {
				t.Fatalf("ParseSubscribe(%q) error %v is not a FrameError with code and message", body, err)
			}
			return
		}
		for topic, pos := range req.Recover {
			if !slices.Contains(req.Topics, topic) || pos.Offset > MaxRecoverOffset || pos.Epoch == "" || len(pos.Epoch) > MaxEpochBytes {
				t.Fatalf("ParseSubscribe(%q) accepted recover[%q] = %+v", body, topic, pos)
			}
		}
	})
}
