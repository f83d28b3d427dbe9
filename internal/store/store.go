// Package store records WebSocket connections and their topic subscriptions.
//
// DynamoDB (dynamo.go) is the system of record on AWS; Memory (memory.go) is
// the devstack's embedded default. Both satisfy Store and pass the same
// conformance suite (storetest).
package store

import (
	"context"
	"errors"
	"time"
)

// MaxConnectionLifetime is API Gateway's maximum WebSocket connection
// duration. Items expire this long (plus TTLSlack) after they are written,
// because $disconnect is best effort and may never come.
const (
	MaxConnectionLifetime = 2 * time.Hour
	TTLSlack              = 10 * time.Minute
)

// Errors callers branch on. Implementations wrap them with context.
var (
	// ErrNotFound: the connection is not (or no longer) recorded.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the backing service could not be reached or refused
	// the request; the caller may retry later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrTableNotFound: the DynamoDB table does not exist (Ping), a fault
	// to fix (deploy it, or let the devstack create it), not to retry.
	ErrTableNotFound = errors.New("table not found")
	// ErrInvalidPageToken: a page token that this store did not issue for
	// this topic.
	ErrInvalidPageToken = errors.New("invalid page token")
	// ErrInvalidArgument: an empty connection id or topic, a user id that
	// breaks ValidateUserID, or a page limit below 1. Nothing was written.
	ErrInvalidArgument = errors.New("invalid argument")
)

// Connection is one open WebSocket connection.
type Connection struct {
	ID          string
	ConnectedAt time.Time
	// Subject is the connect token's "sub": the connection's user, whom
	// UserConnections finds it by. Empty when auth is off (no user);
	// otherwise it must pass ValidateUserID.
	Subject   string
	SourceIP  string
	UserAgent string
	// AllowedTopics are the topic names and "prefix*" patterns the
	// connection may subscribe to; nil means any topic (auth off).
	AllowedTopics []string
	// PublishTopics are the topic names and "prefix*" patterns the
	// connection may publish to (the token's publish claim); nil means any
	// topic (auth off), empty none.
	PublishTopics []string
}

// Subscription is one connection's interest in one topic, or in one
// pattern of topics ("orders.*", "*"; see wsproto.ValidatePattern): the
// store keeps a pattern as it keeps a topic, under its own name, and the
// Subscribe, Unsubscribe, Subscribers, CountSubscribers and Topics calls
// take and return either. The streams (Streams) refuse a pattern.
type Subscription struct {
	ConnectionID string
	Topic        string
	// UserID is the connection's user (its Subject), empty if it has none.
	UserID       string
	SubscribedAt time.Time
}

// Page is one page of a topic's subscribers. NextToken is empty on the last
// page.
type Page struct {
	Subscriptions []Subscription
	NextToken     string
}

// ConnectionPage is one page of a user's connection ids, ordered. NextToken
// is empty on the last page.
type ConnectionPage struct {
	ConnectionIDs []string
	NextToken     string
}

// Store is what handlers, the fan-out and the publisher need from storage.
// Every method is safe for concurrent use.
type Store interface {
	Streams

	// PutConnection records an open connection and, when it has a Subject,
	// makes it one of that user's connections.
	PutConnection(ctx context.Context, c Connection) error
	// GetConnection returns a recorded, unexpired connection or ErrNotFound.
	GetConnection(ctx context.Context, connectionID string) (Connection, error)
	// DeleteConnection removes a connection, all its subscriptions and its
	// place among its user's connections. It is idempotent: deleting an
	// unknown connection is not an error.
	DeleteConnection(ctx context.Context, connectionID string) error
	// Subscribe records the connection's interest in topics, with its user
	// (the connection's Subject; "" for none) on each subscription. The
	// caller passes the user rather than the store reading the connection:
	// the subscribe route has just read the connection to check its grant,
	// and a second read per frame would only cost. It is idempotent:
	// subscribing again keeps the first SubscribedAt and refreshes the
	// expiry.
	Subscribe(ctx context.Context, connectionID, userID string, topics []string) error
	// Unsubscribe removes subscriptions; unknown ones are ignored.
	Unsubscribe(ctx context.Context, connectionID string, topics []string) error
	// Subscribers returns up to limit live subscriptions of topic, ordered by
	// connection id, starting after pageToken ("" for the first page).
	Subscribers(ctx context.Context, topic string, limit int, pageToken string) (Page, error)
	// CountSubscribers counts a topic's live subscriptions (connections)
	// and their distinct users; connections without a user count as
	// connections only. It returns no subscriber list.
	CountSubscribers(ctx context.Context, topic string) (connections, users int, err error)
	// UserConnections returns up to limit ids of the user's live
	// connections, ordered, starting after pageToken ("" for the first
	// page). A token is valid only for the user it was issued for.
	UserConnections(ctx context.Context, userID string, limit int, pageToken string) (ConnectionPage, error)
	// Topics lists the topics a connection is subscribed to.
	Topics(ctx context.Context, connectionID string) ([]string, error)
	// Ping checks that the store is reachable (readiness).
	Ping(ctx context.Context) error
}
