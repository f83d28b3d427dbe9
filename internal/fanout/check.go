package fanout

import (
	"time"

	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Check reports what Publish would refuse m for (ErrInvalid), without
// reading, storing or posting anything: its topic, data, attributes and
// idempotency key, and its envelope with room for the longest position
// and the longest publish time (so it may refuse a message a few bytes
// shorter than Publish would).
// A caller that spends something of its own before publishing (the client
// publish route's rate limit) checks first, so that a message Publish
// would refuse costs the client nothing.
func Check(m Message) error {
	if err := validate(m); err != nil {
		return err
	}
	sized := wsproto.WithLongestPosition(wsproto.Message{Topic: m.Topic, ID: newID(), Data: m.Data, Attributes: m.Attributes,
		PublishTime: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)})
	return checkEnvelope(sized, " with room for its position")
}
