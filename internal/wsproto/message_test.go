package wsproto

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// A frame with a position carries it; the bytes are what browsers parse.
func TestEncodeMessageWithPosition(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	got, err := EncodeMessage(Message{Topic: "a", ID: "m1", Offset: 42, Epoch: "ep-1", Data: json.RawMessage(`7`), PublishTime: at})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"message","topic":"a","id":"m1","offset":42,"epoch":"ep-1","data":7,"publishTime":"2026-11-27T12:00:00Z"}`
	if string(got) != want {
		t.Errorf("EncodeMessage = %s\nwant            %s", got, want)
	}
}

// The envelope sized with the longest position is never shorter than the
// same envelope with any real position, so a message that fits the bound
// fits once positioned.
func TestWithLongestPosition(t *testing.T) {
	t.Parallel()
	m := Message{Topic: "a", ID: "m1", Data: json.RawMessage(`"x"`)}
	longest, err := EncodeMessage(WithLongestPosition(m))
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []struct {
		offset uint64
		epoch  string
	}{
		{1, "e"},
		{18446744073709551615, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{1 << 40, "2026-11-27T12:00:00Z-7f3a"},
	} {
		m.Offset, m.Epoch = pos.offset, pos.epoch
		positioned, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(positioned) > len(longest) {
			t.Errorf("position %d/%q makes %d bytes, over the bound's %d", pos.offset, pos.epoch, len(positioned), len(longest))
		}
	}
}

// History reads a retained frame back into its parts.
func TestDecodeMessage(t *testing.T) {
	t.Parallel()
	in := Message{Topic: "orders", ID: "m9", Offset: 3, Epoch: "ep", Data: json.RawMessage(`{"a":[1,"x"]}`),
		Attributes: map[string]string{"k": "v"}, PublishTime: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	frame, err := EncodeMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMessage(frame)
	if err != nil {
		t.Fatal(err)
	}
	in.Type = TypeMessage
	if !reflect.DeepEqual(got, in) {
		t.Errorf("DecodeMessage = %+v\nwant             %+v", got, in)
	}

	for _, bad := range []string{
		``,
		`not json`,
		`{"type":"pong"}`,
		`{"type":"message","id":"m1"}`,         // no data
		`{"type":"message","data":1}`,          // no id
		`{"type":"message","id":1,"data":1}`,   // id not a string
		`{"type":"subscribed","topics":["a"]}`, // another frame
	} {
		if _, err := DecodeMessage([]byte(bad)); !errors.Is(err, ErrNotMessage) {
			t.Errorf("DecodeMessage(%s) = %v, want ErrNotMessage", bad, err)
		}
	}
}
