package store

import (
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"
)

// maxKeyLen keeps connection ids and topics well inside DynamoDB's key size
// limits (1024 bytes for a sort key), so both stores accept the same input.
const maxKeyLen = 512

func checkConnectionID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty connection id", ErrInvalidArgument)
	case len(id) > maxKeyLen:
		return fmt.Errorf("%w: connection id longer than %d bytes", ErrInvalidArgument, maxKeyLen)
	}
	return nil
}

func checkTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalidArgument)
	case len(topic) > maxKeyLen:
		return fmt.Errorf("%w: topic longer than %d bytes", ErrInvalidArgument, maxKeyLen)
	}
	return nil
}

// checkTopics validates every topic before anything is written, so a bad
// one stores nothing, and drops duplicates.
func checkTopics(connectionID string, topics []string) ([]string, error) {
	if err := checkConnectionID(connectionID); err != nil {
		return nil, err
	}
	for _, t := range topics {
		if err := checkTopic(t); err != nil {
			return nil, err
		}
	}
	topics = slices.Clone(topics)
	slices.Sort(topics)
	return slices.Compact(topics), nil
}

// checkSubscribersArgs validates a Subscribers call the same way for every
// store and returns the connection id the page starts after.
func checkSubscribersArgs(topic string, limit int, pageToken string) (after string, err error) {
	if err := checkTopic(topic); err != nil {
		return "", err
	}
	if limit < 1 {
		return "", fmt.Errorf("%w: limit %d, want at least 1", ErrInvalidArgument, limit)
	}
	return decodePageToken(topic, pageToken)
}

// MaxUserIDLen bounds a user id (a connect token's "sub") in bytes: the
// publisher, $connect and both stores refuse longer ones with the same rule.
const MaxUserIDLen = 128

// ValidateUserID is the one rule for user ids, shared by $connect (which
// refuses a token whose sub breaks it), the publisher's SendToUser and
// Disconnect, and the stores: non-empty, at most MaxUserIDLen bytes, valid
// UTF-8 without control characters (they would end up in item keys, logs
// and error messages). Its errors wrap ErrInvalidArgument.
func ValidateUserID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty user id", ErrInvalidArgument)
	case len(id) > MaxUserIDLen:
		return fmt.Errorf("%w: user id longer than %d bytes", ErrInvalidArgument, MaxUserIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: user id is not valid UTF-8", ErrInvalidArgument)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: user id holds control character %U", ErrInvalidArgument, r)
		}
	}
	return nil
}

// checkOptionalUserID accepts "" (no user) or a valid user id.
func checkOptionalUserID(id string) error {
	if id == "" {
		return nil
	}
	return ValidateUserID(id)
}

// checkUserConnectionsArgs validates a UserConnections call the same way
// for every store and returns the connection id the page starts after.
func checkUserConnectionsArgs(userID string, limit int, pageToken string) (after string, err error) {
	if err := ValidateUserID(userID); err != nil {
		return "", err
	}
	if limit < 1 {
		return "", fmt.Errorf("%w: limit %d, want at least 1", ErrInvalidArgument, limit)
	}
	return decodeUserPageToken(userID, pageToken)
}
