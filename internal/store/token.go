package store

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// pageToken is what the opaque page tokens of Subscribers and
// UserConnections carry. Binding it to the topic, or to the user, lets a
// token handed to one listing be refused by another's: a topic's token has
// no user and a user's no topic, so even a topic and a user of the same
// name do not share tokens.
type pageToken struct {
	Topic string `json:"t,omitempty"`
	User  string `json:"u,omitempty"`
	After string `json:"a"` // the last connection id of the previous page
}

func encodePageToken(topic, after string) string {
	b, _ := json.Marshal(pageToken{Topic: topic, After: after}) // strings only: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func encodeUserPageToken(user, after string) string {
	b, _ := json.Marshal(pageToken{User: user, After: after}) // strings only: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken returns the connection id to list after; "" for the first
// page.
func decodePageToken(topic, token string) (string, error) {
	return decodeToken(pageToken{Topic: topic}, token)
}

// decodeUserPageToken is decodePageToken for a user's connections.
func decodeUserPageToken(user, token string) (string, error) {
	return decodeToken(pageToken{User: user}, token)
}

// decodeToken returns the After of token if it was issued for scope's
// topic and user.
func decodeToken(scope pageToken, token string) (string, error) {
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
	if pt.Topic != scope.Topic || pt.User != scope.User {
		return "", fmt.Errorf("%w: issued for another listing", ErrInvalidPageToken)
	}
	return pt.After, nil
}
