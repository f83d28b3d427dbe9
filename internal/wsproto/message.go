package wsproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// A topic publish's message frame carries the message's position: "offset"
// grows by exactly 1 per accepted publish to the topic, within the
// "epoch" it names. A client that sees a gap knows what it missed, and one
// that sees another epoch knows the offsets it holds mean nothing here.

// MaxEpochBytes bounds an epoch's length. The fan-out sizes an envelope
// with the longest position (MaxPositionMessage) before it takes a real
// one, so that a message too large to deliver never consumes an offset;
// the stores make epochs far shorter, of characters JSON does not escape.
const MaxEpochBytes = 64

// ErrNotMessage is wrapped by DecodeMessage's errors.
var ErrNotMessage = errors.New("not a message frame")

// WithLongestPosition returns m with the largest offset and the longest
// epoch a position can have, so that its encoding is as long as m's can
// ever be once it has its real position.
func WithLongestPosition(m Message) Message {
	m.Offset = math.MaxUint64
	m.Epoch = strings.Repeat("e", MaxEpochBytes)
	return m
}

// DecodeMessage reads back a message frame EncodeMessage made: the
// History RPC returns retained messages from the frames subscribers got,
// which are the one copy kept.
func DecodeMessage(frame []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(frame, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrNotMessage, err)
	}
	if m.Type != TypeMessage || m.ID == "" || len(m.Data) == 0 {
		return Message{}, fmt.Errorf("%w: type %q, id %q, %d bytes of data", ErrNotMessage, m.Type, m.ID, len(m.Data))
	}
	return m, nil
}
