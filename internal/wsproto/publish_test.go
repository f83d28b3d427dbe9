package wsproto

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		want       PublishRequest
	}{
		{"data of any kind", `{"action":"publish","topic":"chat.r1","data":{"text":"hi"}}`,
			PublishRequest{Topic: "chat.r1", Data: json.RawMessage(`{"text":"hi"}`)}},
		{"null is a value", `{"action":"publish","topic":"a","data":null}`,
			PublishRequest{Topic: "a", Data: json.RawMessage(`null`)}},
		{"attributes and a ref", `{"action":"publish","topic":"a","data":1,"attributes":{"k":"v","e":""},"ref":"r-1 ~!"}`,
			PublishRequest{Topic: "a", Data: json.RawMessage(`1`), Attributes: map[string]string{"k": "v", "e": ""}, Ref: "r-1 ~!"}},
		{"a ref of MaxRefBytes", `{"action":"publish","topic":"a","data":1,"ref":"` + strings.Repeat("r", MaxRefBytes) + `"}`,
			PublishRequest{Topic: "a", Data: json.RawMessage(`1`), Ref: strings.Repeat("r", MaxRefBytes)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePublish([]byte(tc.body))
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if got.Topic != tc.want.Topic || string(got.Data) != string(tc.want.Data) || got.Ref != tc.want.Ref ||
				!maps.Equal(got.Attributes, tc.want.Attributes) || (got.Attributes == nil) != (tc.want.Attributes == nil) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Every mistake is a FrameError with the contract's code; the ref comes
// back whenever it was itself valid and given once, for the error answer.
func TestParsePublishRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, code, ref string
	}{
		{"not JSON", `{"action":`, CodeBadRequest, ""},
		{"not an object", `["publish"]`, CodeBadRequest, ""},
		{"no data", `{"action":"publish","topic":"a","ref":"x"}`, CodeBadRequest, "x"},
		{"no topic", `{"action":"publish","data":1,"ref":"x"}`, CodeInvalidTopic, "x"},
		{"topic not a string", `{"action":"publish","topic":1,"data":1}`, CodeInvalidTopic, ""},
		{"empty topic", `{"action":"publish","topic":"","data":1}`, CodeInvalidTopic, ""},
		{"invalid topic", `{"action":"publish","topic":"a b","data":1,"ref":"x"}`, CodeInvalidTopic, "x"},
		{"the every-topic pattern", `{"action":"publish","topic":"*","data":1}`, CodeInvalidTopic, ""},
		{"a prefix pattern", `{"action":"publish","topic":"chat.*","data":1,"ref":"x"}`, CodeInvalidTopic, "x"},
		{"attributes not an object", `{"action":"publish","topic":"a","data":1,"attributes":["k"]}`, CodeBadRequest, ""},
		{"attribute not a string", `{"action":"publish","topic":"a","data":1,"attributes":{"k":1}}`, CodeBadRequest, ""},
		{"attribute twice", `{"action":"publish","topic":"a","data":1,"attributes":{"k":"1","k":"2"}}`, CodeBadRequest, ""},
		{"data twice", `{"action":"publish","topic":"a","data":1,"data":2,"ref":"x"}`, CodeBadRequest, "x"},
		{"topic twice", `{"action":"publish","topic":"a","topic":"b","data":1}`, CodeBadRequest, ""},
		{"unknown field", `{"action":"publish","topic":"a","data":1,"idempotencyKey":"k","ref":"x"}`, CodeBadRequest, "x"},
		{"differently cased field", `{"action":"publish","Topic":"a","data":1}`, CodeBadRequest, ""},
		{"ref empty", `{"action":"publish","topic":"a","data":1,"ref":""}`, CodeBadRequest, ""},
		{"ref too long", `{"action":"publish","topic":"a","data":1,"ref":"` + strings.Repeat("r", MaxRefBytes+1) + `"}`, CodeBadRequest, ""},
		{"ref not ASCII", `{"action":"publish","topic":"a","data":1,"ref":"é"}`, CodeBadRequest, ""},
		{"ref with a control character", `{"action":"publish","topic":"a","data":1,"ref":"a\nb"}`, CodeBadRequest, ""},
		{"ref not a string", `{"action":"publish","topic":"a","data":1,"ref":7}`, CodeBadRequest, ""},
		{"ref twice", `{"action":"publish","topic":"a","data":1,"ref":"x","ref":"y"}`, CodeBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePublish([]byte(tc.body))
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Code != tc.code {
				t.Fatalf("error %v, want a FrameError %s", err, tc.code)
			}
			if got.Ref != tc.ref {
				t.Errorf("ref %q, want %q", got.Ref, tc.ref)
			}
			if !json.Valid(ErrorWithRef(fe.Code, fe.Message, got.Ref)) {
				t.Errorf("error frame for %s is not valid JSON", tc.body)
			}
		})
	}
}

func TestPublishedAndErrorFrames(t *testing.T) {
	t.Parallel()
	var p map[string]any
	if err := json.Unmarshal(Published("chat.r1", "id-1", Position{"E", 7}, "r1"), &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "published", "topic": "chat.r1", "id": "id-1", "offset": float64(7), "epoch": "E", "ref": "r1"}
	if !maps.Equal(p, want) {
		t.Errorf("published = %v, want %v", p, want)
	}
	var noRef map[string]any
	json.Unmarshal(Published("a", "i", Position{"E", 1}, ""), &noRef)
	if _, ok := noRef["ref"]; ok {
		t.Errorf("published without a ref carries one: %v", noRef)
	}
	var e map[string]any
	json.Unmarshal(ErrorWithRef(CodeRateLimited, "slow down", "r2"), &e)
	if wantE := map[string]any{"type": "error", "code": "rate_limited", "message": "slow down", "ref": "r2"}; !maps.Equal(e, wantE) {
		t.Errorf("error = %v, want %v", e, wantE)
	}
	if string(ErrorWithRef(CodeForbidden, "no", "")) != string(Error(CodeForbidden, "no")) {
		t.Errorf("an error without a ref is not the plain error frame")
	}
}
