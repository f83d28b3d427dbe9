// Package fanout delivers one published message to every subscriber of a
// topic through the API Gateway management API. It is the one transport-free
// executor behind the publisher service's gRPC and REST APIs and the publish
// Lambda.
package fanout

import (
	"encoding/json"
	"errors"
)

// ErrInvalid marks a message the caller must fix (bad topic, no data,
// envelope over 128 KB). Errors wrap it with the detail.
var ErrInvalid = errors.New("invalid message")

// Message is what a backend publishes.
type Message struct {
	Topic      string
	Data       json.RawMessage // any JSON value; required
	Attributes map[string]string
}

// Result counts how the deliveries of one publish ended.
type Result struct {
	MessageID string
	Delivered int
	Gone      int
	Failed    int
}
