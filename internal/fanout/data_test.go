package fanout

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

func TestCheckData(t *testing.T) {
	t.Parallel()
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		name, data, want string
	}{
		{"object", `{"a":[1,{"b":null}]}`, ""},
		{"scalar", `"text"`, ""},
		{"brackets inside strings do not nest", `["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"]"]`, ""},
		{"at the depth limit", nested(MaxDataDepth), ""},
		{"one past the limit", nested(MaxDataDepth + 1), "nests 33 levels"},
		{"empty", ``, "required"},
		{"not JSON", `{"a":`, "not valid JSON"},
		{"two values", `1 2`, "not valid JSON"},
		{"invalid UTF-8", "\"\xff\"", "UTF-8"},
	} {
		err := checkData([]byte(tc.data))
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: checkData = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzValidate: whatever validate accepts encodes into a valid envelope, and
// whatever it refuses is refused as ErrInvalid.
func FuzzValidate(f *testing.F) {
	f.Add("orders.eu", []byte(`{"id":1}`), "k", "v")
	f.Add("", []byte(`1`), "", "")
	f.Add("a b", []byte(`[[[]]]`), "k", "\xff")
	f.Add("t", []byte("\"\xc3\x28\""), "k", "v")
	f.Add("t", []byte(`{"a":"\"]]]"}`), strings.Repeat("k", 200), "v")
	f.Fuzz(func(t *testing.T, topic string, data []byte, key, value string) {
		m := Message{Topic: topic, Data: data, Attributes: map[string]string{key: value}}
		if err := validate(m); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if wsproto.ValidateTopic(topic) != nil || !json.Valid(data) || !utf8.Valid(data) || depth(data) > MaxDataDepth {
			t.Fatalf("validate accepted topic %q data %q", topic, data)
		}
		env, err := wsproto.EncodeMessage(wsproto.Message{Topic: topic, ID: "x", Data: data, Attributes: m.Attributes})
		if err != nil || !json.Valid(env) {
			t.Fatalf("accepted message does not encode: %v", err)
		}
	})
}
