// Package wsproto holds wsgateway's WebSocket wire format: the JSON frames
// browsers send and receive, and the rules topic names follow. It is the
// contract docs/protocol.md describes ("WebSocket frames"), in code; nothing
// here does I/O.
package wsproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Client actions; API Gateway selects the route with $request.body.action.
const (
	ActionSubscribe   = "subscribe"
	ActionUnsubscribe = "unsubscribe"
	ActionPing        = "ping"
)

// Server frame types.
const (
	TypeSubscribed   = "subscribed"
	TypeUnsubscribed = "unsubscribed"
	TypePong         = "pong"
	TypeMessage      = "message"
	TypeError        = "error"
	TypeDisconnect   = "disconnect"
)

// Error frame codes.
const (
	CodeBadRequest    = "bad_request"
	CodeUnknownAction = "unknown_action"
	CodeInvalidTopic  = "invalid_topic"
	CodeForbidden     = "forbidden"
	CodeLimitExceeded = "limit_exceeded"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal_error"
	// CodeRateLimited: the connection published faster than its limit
	// (publish.go); it may publish again shortly.
	CodeRateLimited = "rate_limited"
)

// MaxTopicsPerRequest bounds one subscribe or unsubscribe frame so that a
// single frame cannot make a handler write an unbounded number of items.
const MaxTopicsPerRequest = 50

var topicRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// ErrInvalidTopic is wrapped by ValidateTopic's and ValidatePattern's
// errors.
var ErrInvalidTopic = errors.New("invalid topic")

// ValidateTopic reports whether name is a valid topic name, with a message a
// human can act on.
func ValidateTopic(name string) error {
	if name == "" {
		return fmt.Errorf("%w: topic is empty", ErrInvalidTopic)
	}
	if IsPattern(name) {
		// The likely mistake: a pattern where only a topic will do (a
		// publish, a history), which deserves its own answer.
		return fmt.Errorf("%w: %q is a pattern, not a topic: patterns are for subscribing, name one topic here", ErrInvalidTopic, Clip(name, 40))
	}
	if !topicRule.MatchString(name) {
		return fmt.Errorf("%w: %q must match %s", ErrInvalidTopic, Clip(name, 40), topicRule)
	}
	return nil
}

// Clip shortens client input echoed in an error message to at most n bytes
// plus "…", cutting on a rune boundary: a frame is JSON, which must be
// valid UTF-8, and half a multi-byte character would make it invalid.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Request is a client frame routed to subscribe or unsubscribe. Topic is the
// single-topic shorthand the contract also accepts.
type Request struct {
	Action string   `json:"action"`
	Topic  string   `json:"topic,omitempty"`
	Topics []string `json:"topics,omitempty"`
}

// Action returns the route key API Gateway would select for body, or "" when
// body is not a JSON object with a string "action" (the $default route).
// The key match is exact, as in API Gateway's JSONPath, where encoding/json
// would also take "Action".
func Action(body []byte) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return ""
	}
	var action string
	if json.Unmarshal(fields["action"], &action) != nil {
		return ""
	}
	return action
}

// FrameError is a client mistake, reported to the client as an error frame.
type FrameError struct {
	Code    string
	Message string
}

func (e *FrameError) Error() string { return e.Code + ": " + e.Message }

// ParseTopics decodes a subscribe or unsubscribe frame and returns its
// topics and patterns (pattern.go), validated and de-duplicated in order
// of first appearance. Its
// errors speak of the frame's fields, never of the Go types they are
// decoded into.
func ParseTopics(body []byte) ([]string, error) {
	// Pointers tell a field that is absent from one given empty.
	var req struct {
		Topic  *string   `json:"topic"`
		Topics *[]string `json:"topics"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, decodeError(err)
	}
	var topics []string
	if req.Topic != nil && *req.Topic != "" {
		topics = append(topics, *req.Topic)
	}
	if req.Topics != nil {
		topics = append(topics, *req.Topics...)
	}
	switch {
	case len(topics) == 0 && req.Topics != nil:
		// Not a bad name but a malformed request: there is no name to
		// judge.
		return nil, &FrameError{CodeBadRequest, `"topics" is empty: list at least one topic name`}
	case len(topics) == 0:
		return nil, &FrameError{CodeInvalidTopic, `give "topics": ["name", …] or "topic": "name"`}
	case len(topics) > MaxTopicsPerRequest:
		return nil, &FrameError{CodeLimitExceeded, fmt.Sprintf("at most %d topics per request, got %d", MaxTopicsPerRequest, len(topics))}
	}
	seen := make(map[string]bool, len(topics))
	out := topics[:0:0]
	for _, t := range topics {
		if err := ValidateTopicOrPattern(t); err != nil {
			return nil, &FrameError{CodeInvalidTopic, err.Error()}
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}

// decodeError says what is wrong with a frame in the protocol's terms: the
// field and the shape it must have.
func decodeError(err error) *FrameError {
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		return &FrameError{CodeBadRequest, "frame is not valid JSON"}
	}
	// Field is the path to the value, "topics.3" for a list element, and
	// empty when the frame itself is not an object.
	switch field, _, _ := strings.Cut(typeErr.Field, "."); field {
	case "topics":
		return &FrameError{CodeBadRequest, `"topics" must be a list of topic names (strings)`}
	case "topic":
		return &FrameError{CodeBadRequest, `"topic" must be a topic name (a string)`}
	default:
		return &FrameError{CodeBadRequest, "frame must be a JSON object"}
	}
}

// TopicsFrame is the answer to unsubscribe.
type TopicsFrame struct {
	Type   string   `json:"type"`
	Topics []string `json:"topics"`
}

// Pong is the answer to ping.
type Pong struct {
	Type string `json:"type"`
}

// ErrorFrame tells the client what was wrong with what it sent.
type ErrorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Message is the envelope every subscriber of a topic receives. Offset and
// Epoch are the message's position in its topic (see message.go); a frame
// without a position leaves them out. A message sent to a user (users.go)
// names the User instead of a Topic, and has no position.
type Message struct {
	Type        string            `json:"type"`
	Topic       string            `json:"topic,omitempty"`
	User        string            `json:"user,omitempty"`
	ID          string            `json:"id"`
	Offset      uint64            `json:"offset,omitempty"`
	Epoch       string            `json:"epoch,omitempty"`
	Data        json.RawMessage   `json:"data"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	PublishTime time.Time         `json:"publishTime"`
}

// Unsubscribed, PongFrame and Error build the encoded server frames
// handlers answer with (Subscribed, in subscribe.go, too).
func Unsubscribed(topics []string) []byte { return mustMarshal(TopicsFrame{TypeUnsubscribed, topics}) }
func PongFrame() []byte                   { return mustMarshal(Pong{TypePong}) }
func Error(code, message string) []byte {
	return mustMarshal(ErrorFrame{TypeError, code, message})
}

// EncodeMessage encodes the envelope once per publish; the caller posts the
// same bytes to every subscriber.
func EncodeMessage(m Message) ([]byte, error) {
	m.Type = TypeMessage
	m.PublishTime = m.PublishTime.UTC()
	return json.Marshal(m)
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed, marshalable types reach here
	}
	return b
}
