package wsproto

import (
	"encoding/json"
	"fmt"
	"strings"
)

// A client may publish to a topic itself: the message is fanned out like a
// backend's, and the answer tells the client the message's id and
// position. A "ref" of the client's choosing is echoed on the answer (and
// on an error answering the frame), so that a client with several
// publishes in flight can tell which answer is whose.

// ActionPublish is the client publish's route key; TypePublished its
// answer.
const (
	ActionPublish = "publish"
	TypePublished = "published"
)

// MaxRefBytes bounds a publish's "ref": it is echoed, never stored, but
// it rides on every answer and log line of the frame.
const MaxRefBytes = 64

// PublishRequest is a publish frame, validated for shape: Topic is a
// topic name (not a pattern), Data one JSON value, Attributes strings.
// The limits every message shares (the data's size and depth, the
// attributes' count and lengths) are the executor's to judge, as for a
// backend's publish.
type PublishRequest struct {
	Topic      string
	Data       json.RawMessage
	Attributes map[string]string
	// Ref is the client's "ref", "" when it gave none.
	Ref string
}

// ParsePublish decodes a publish frame strictly: an object with "action",
// "topic" (a topic name), "data" (any JSON value, null included, but
// present), and optionally "attributes" (an object of strings) and "ref"
// (1 to 64 printable ASCII characters); no other field, none twice. Its
// errors name the field. The ref is returned even when another field is
// wrong, so that the error answer can echo it.
func ParsePublish(body []byte) (PublishRequest, error) {
	members, ok := objectMembers(body)
	if !ok {
		if !json.Valid(body) {
			return PublishRequest{}, badRequest("frame is not valid JSON")
		}
		return PublishRequest{}, badRequest("frame must be a JSON object")
	}
	var req PublishRequest
	count := make(map[string]int, len(members))
	for _, m := range members {
		count[m.key]++
	}
	// The ref first: every later error can then echo it. One given twice
	// is echoed by neither.
	for _, m := range members {
		if m.key == "ref" && count["ref"] == 1 {
			ref, err := parseRef(m.value)
			if err != nil {
				return PublishRequest{}, err
			}
			req.Ref = ref
		}
	}
	var haveTopic, haveData bool
	for _, m := range members {
		if count[m.key] > 1 {
			return req, badRequest(fmt.Sprintf("%q is given twice", Clip(m.key, 40)))
		}
		switch m.key {
		case "ref": // read above
		case "action":
			var a string
			if json.Unmarshal(m.value, &a) != nil || a != ActionPublish {
				return req, badRequest(`"action" must be "publish"`)
			}
		case "topic":
			var t string
			if !strings.HasPrefix(string(m.value), `"`) || json.Unmarshal(m.value, &t) != nil {
				return req, &FrameError{CodeInvalidTopic, `"topic" must be a topic name (a string)`}
			}
			req.Topic, haveTopic = t, true
		case "data":
			req.Data, haveData = m.value, true
		case "attributes":
			attrs, err := parseAttributes(m.value)
			if err != nil {
				return req, err
			}
			req.Attributes = attrs
		default:
			return req, badRequest(fmt.Sprintf(`unknown field %q: a publish has "topic", "data", "attributes" and "ref"`, Clip(m.key, 40)))
		}
	}
	switch {
	case !haveTopic:
		return req, &FrameError{CodeInvalidTopic, `give "topic": the name of the topic to publish to`}
	case !haveData:
		return req, badRequest(`"data" is missing: give the message, any JSON value`)
	}
	if err := ValidatePublishTopic(req.Topic); err != nil {
		return req, err
	}
	return req, nil
}

// ValidatePublishTopic refuses a topic a client cannot publish to: a
// subscription pattern ("*", "orders.*"), which names many topics where a
// message goes to one, and anything ValidateTopic refuses.
func ValidatePublishTopic(topic string) error {
	if strings.Contains(topic, "*") {
		return &FrameError{CodeInvalidTopic, fmt.Sprintf("%q is a pattern: publish to one topic, not a pattern", Clip(topic, 40))}
	}
	if err := ValidateTopic(topic); err != nil {
		return &FrameError{CodeInvalidTopic, err.Error()}
	}
	return nil
}

func parseRef(raw json.RawMessage) (string, error) {
	const shape = `"ref" must be a string of 1 to 64 printable ASCII characters`
	var ref string
	if !strings.HasPrefix(string(raw), `"`) || json.Unmarshal(raw, &ref) != nil || ref == "" || len(ref) > MaxRefBytes {
		return "", badRequest(shape)
	}
	for i := range len(ref) {
		if c := ref[i]; c < 0x20 || c > 0x7e {
			return "", badRequest(shape)
		}
	}
	return ref, nil
}

// parseAttributes accepts an object whose values are strings, each key
// once; their count and lengths are the executor's to judge.
func parseAttributes(raw json.RawMessage) (map[string]string, error) {
	const shape = `"attributes" must be an object of strings`
	members, ok := objectMembers(raw)
	if !ok {
		return nil, badRequest(shape)
	}
	out := make(map[string]string, len(members))
	for _, m := range members {
		var v string
		if !strings.HasPrefix(string(m.value), `"`) || json.Unmarshal(m.value, &v) != nil {
			return nil, badRequest(fmt.Sprintf("attributes[%q] must be a string", Clip(m.key, 40)))
		}
		if _, dup := out[m.key]; dup {
			return nil, badRequest(fmt.Sprintf("attributes[%q] is given twice", Clip(m.key, 40)))
		}
		out[m.key] = v
	}
	return out, nil
}

// PublishedFrame answers a publish the executor accepted: the message's
// id and its position in the topic, which the sender also sees on the
// message itself if it is subscribed.
type PublishedFrame struct {
	Type   string `json:"type"`
	Topic  string `json:"topic"`
	ID     string `json:"id"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	Ref    string `json:"ref,omitempty"`
}

// Published builds the encoded answer to a publish.
func Published(topic, id string, pos Position, ref string) []byte {
	return mustMarshal(PublishedFrame{TypePublished, topic, id, pos.Offset, pos.Epoch, ref})
}

// RefErrorFrame is an error answering a frame that carried a "ref".
type RefErrorFrame struct {
	ErrorFrame
	Ref string `json:"ref,omitempty"`
}

// ErrorWithRef builds an error frame echoing ref ("" for none, which is
// then the plain error frame).
func ErrorWithRef(code, message, ref string) []byte {
	return mustMarshal(RefErrorFrame{ErrorFrame{TypeError, code, message}, ref})
}
