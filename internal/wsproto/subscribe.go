package wsproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
)

// A subscribe may ask to recover what the client missed while it was away
// (a dropped network, API Gateway's 2-hour close): for each topic, the
// position of the last message it saw. The answer says, per topic, whether
// every later message will reach the connection (recovered) or the client
// must resync from its own source of truth.

// Position is a place in a topic's stream: the epoch and the offset of a
// message within it. Offset 0 is the place before the epoch's first message.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// MaxRecoverOffset is the largest offset a client may name: 2^53, the
// largest integer a browser's JSON numbers hold exactly. A larger one was
// never sent by this server.
const MaxRecoverOffset = 1 << 53

// SubscribeRequest is a subscribe frame, validated.
type SubscribeRequest struct {
	// Topics are validated and de-duplicated, as ParseTopics returns them.
	Topics []string
	// Recover maps each topic the client asks to recover to the position
	// of the last message it saw. nil when the frame has no "recover";
	// empty, not nil, when it has "recover": {} (the answer then carries
	// an empty "recovered").
	Recover map[string]Position
}

// ParseSubscribe decodes a subscribe frame: its topics as ParseTopics does,
// and "recover", strictly: an object mapping topics of the frame to
// {"epoch": string, "offset": integer 0..2^53}, nothing else. Every
// mistake is a FrameError naming the field, so nothing is stored for a
// frame the client got wrong.
func ParseSubscribe(body []byte) (SubscribeRequest, error) {
	topics, err := ParseTopics(body)
	if err != nil {
		return SubscribeRequest{}, err
	}
	// A map, not a struct: encoding/json would also take "Recover", where
	// the contract's key is exact, and a map tells "recover": null from an
	// absent key.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return SubscribeRequest{}, decodeError(err)
	}
	raw, ok := fields["recover"]
	if !ok {
		return SubscribeRequest{Topics: topics}, nil
	}
	recover, err := parseRecover(raw, topics)
	if err != nil {
		return SubscribeRequest{}, err
	}
	return SubscribeRequest{Topics: topics, Recover: recover}, nil
}

func parseRecover(raw json.RawMessage, topics []string) (map[string]Position, error) {
	const shape = `"recover" must be an object mapping each topic to {"epoch": string, "offset": integer}`
	entries, ok := objectMembers(raw)
	if !ok {
		return nil, badRequest(shape)
	}
	inFrame := make(map[string]bool, len(topics))
	for _, t := range topics {
		inFrame[t] = true
	}
	out := make(map[string]Position, len(entries))
	for _, e := range entries {
		field := fmt.Sprintf("recover[%q]", Clip(e.key, 40))
		if _, dup := out[e.key]; dup {
			return nil, badRequest(field + " is given twice")
		}
		// Checked first: a key that is no topic of the frame (an invalid
		// name included) gets one clear message, whatever its value.
		if !inFrame[e.key] {
			return nil, badRequest(field + ` names a topic not in "topics": recover only topics this frame subscribes to`)
		}
		pos, err := parsePosition(field, e.value)
		if err != nil {
			return nil, err
		}
		out[e.key] = pos
	}
	return out, nil
}

// wholeNumber is a JSON number written as a non-negative integer: no sign,
// fraction or exponent. JSON.stringify writes every safe integer this way.
var wholeNumber = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

func parsePosition(field string, raw json.RawMessage) (Position, error) {
	const shape = ` must be an object {"epoch": string, "offset": integer}`
	members, ok := objectMembers(raw)
	if !ok {
		return Position{}, badRequest(field + shape)
	}
	var pos Position
	var haveEpoch, haveOffset bool
	for _, m := range members {
		switch m.key {
		case "epoch":
			if haveEpoch {
				return Position{}, badRequest(field + `.epoch is given twice`)
			}
			haveEpoch = true
			var s string
			if !bytes.HasPrefix(m.value, []byte(`"`)) || json.Unmarshal(m.value, &s) != nil || s == "" || len(s) > MaxEpochBytes {
				return Position{}, badRequest(fmt.Sprintf("%s.epoch must be a string of 1 to %d bytes, as a message frame's \"epoch\"", field, MaxEpochBytes))
			}
			pos.Epoch = s
		case "offset":
			if haveOffset {
				return Position{}, badRequest(field + `.offset is given twice`)
			}
			haveOffset = true
			s := string(m.value)
			if !wholeNumber.MatchString(s) {
				return Position{}, badRequest(field + ".offset must be a whole number ≥ 0")
			}
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil || n > MaxRecoverOffset {
				return Position{}, badRequest(fmt.Sprintf("%s.offset must be at most 2^53 (%d)", field, uint64(MaxRecoverOffset)))
			}
			pos.Offset = n
		default:
			return Position{}, badRequest(fmt.Sprintf(`%s has an unknown field %q: want only "epoch" and "offset"`, field, Clip(m.key, 40)))
		}
	}
	switch {
	case !haveEpoch:
		return Position{}, badRequest(field + `.epoch is missing: give the "epoch" of the last message received`)
	case !haveOffset:
		return Position{}, badRequest(field + `.offset is missing: give the "offset" of the last message received`)
	}
	return pos, nil
}

type member struct {
	key   string
	value json.RawMessage
}

// objectMembers returns the members of the JSON object raw in order,
// duplicates included (a map would keep only the last), or false when raw
// is not an object. raw is valid JSON: it was cut from a decoded frame.
func objectMembers(raw json.RawMessage) ([]member, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		out = append(out, member{key, v})
	}
	return out, true
}

func badRequest(msg string) *FrameError { return &FrameError{CodeBadRequest, msg} }

// SubscribedFrame is the answer to subscribe.
type SubscribedFrame struct {
	Type   string   `json:"type"`
	Topics []string `json:"topics"`
	// Positions holds every topic of the frame, not its patterns, which
	// are never published to: its latest position when
	// the subscription was stored (offset 0 when nothing was published in
	// its epoch), so the client knows where it starts before its first
	// message.
	Positions map[string]Position `json:"positions"`
	// Recovered answers each topic of the request's "recover": true when
	// every message after the client's position reaches the connection,
	// false when the client must resync (always, for a pattern). Absent when the request had no
	// "recover" (nil), present even if empty when it had one.
	Recovered map[string]bool `json:"recovered,omitzero"`
}

// Subscribed builds the encoded answer to subscribe; recovered is nil
// when the request had no "recover".
func Subscribed(topics []string, positions map[string]Position, recovered map[string]bool) []byte {
	if positions == nil {
		positions = map[string]Position{}
	}
	return mustMarshal(SubscribedFrame{TypeSubscribed, topics, positions, recovered})
}
