package store

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// pageToken is what Subscribers' opaque page tokens carry. Binding it to the
// topic lets a token handed to one topic's listing be refused by another's.
type pageToken struct {
	Topic string `json:"t"`
	After string `json:"a"` // the last connection id of the previous page
}

func encodePageToken(topic, after string) string {
	b, _ := json.Marshal(pageToken{Topic: topic, After: after}) // strings only: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken returns the connection id to list after; "" for the first
// page.
func decodePageToken(topic, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", fmt.Errorf("%w: not base64url", ErrInvalidPageToken)
	}
	var pt pageToken
	if err := json.Unmarshal(b, &pt); err != nil || pt.After == "" {
		return "", fmt.Errorf("%w: malformed", ErrInvalidPageToken)
	}
	if pt.Topic != topic {
		return "", fmt.Errorf("%w: issued for another topic", ErrInvalidPageToken)
	}
	return pt.After, nil
}
