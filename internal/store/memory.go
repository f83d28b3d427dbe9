package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is an in-process Store for the devstack and tests. It keeps the
// same indexes as the DynamoDB layout, both ways, so every call costs what
// it returns rather than the size of the table.
type Memory struct {
	now func() time.Time

	mu     sync.RWMutex
	conns  map[string]memConnection
	topics map[string][]memSubscription   // topic → subscriptions ordered by connection id
	byConn map[string]map[string]struct{} // connection id → its topics
	users  map[string][]string            // user id → its connection ids, ordered (DynamoDB's user# partition)

	streams memStreams // positions, history and idempotency keys (memory_streams.go)
	rates   memRates   // publish rate limits per connection (ratelimit.go)
}

type memConnection struct {
	conn    Connection
	expires int64
}

type memSubscription struct {
	connID  string
	userID  string
	at      time.Time
	expires int64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory(opts ...Option) *Memory {
	o := newOptions(opts)
	return &Memory{
		now:    o.now,
		conns:  make(map[string]memConnection),
		topics: make(map[string][]memSubscription),
		byConn: make(map[string]map[string]struct{}),
		users:  make(map[string][]string),
		streams: memStreams{
			counters: make(map[string]*memCounter),
			history:  make(map[string][]memRetained),
			keys:     make(map[idemKey]*memReservation),
		},
	}
}

func (m *Memory) PutConnection(_ context.Context, c Connection) error {
	if err := checkConnectionID(c.ID); err != nil {
		return err
	}
	if err := checkOptionalUserID(c.Subject); err != nil {
		return err
	}
	c = cloneConnection(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.conns[c.ID]; ok && old.conn.Subject != c.Subject {
		m.removeMembership(old.conn.Subject, c.ID)
	}
	m.conns[c.ID] = memConnection{conn: c, expires: expiresAt(m.now())}
	if c.Subject != "" {
		ids := m.users[c.Subject]
		if i, found := slices.BinarySearch(ids, c.ID); !found {
			m.users[c.Subject] = slices.Insert(ids, i, c.ID)
		}
	}
	return nil
}

// removeMembership drops a connection from its user's list; m.mu is held.
func (m *Memory) removeMembership(userID, connectionID string) {
	if userID == "" {
		return
	}
	ids := m.users[userID]
	i, found := slices.BinarySearch(ids, connectionID)
	if !found {
		return
	}
	if ids = slices.Delete(ids, i, i+1); len(ids) == 0 {
		delete(m.users, userID)
	} else {
		m.users[userID] = ids
	}
}

func (m *Memory) GetConnection(_ context.Context, connectionID string) (Connection, error) {
	if err := checkConnectionID(connectionID); err != nil {
		return Connection{}, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	mc, ok := m.conns[connectionID]
	if !ok || !live(mc.expires, now) {
		return Connection{}, fmt.Errorf("connection %q: %w", connectionID, ErrNotFound)
	}
	return cloneConnection(mc.conn), nil
}

func (m *Memory) DeleteConnection(_ context.Context, connectionID string) error {
	if err := checkConnectionID(connectionID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for topic := range m.byConn[connectionID] {
		m.removeSubscription(topic, connectionID)
	}
	delete(m.byConn, connectionID)
	if mc, ok := m.conns[connectionID]; ok {
		m.removeMembership(mc.conn.Subject, connectionID)
	}
	delete(m.conns, connectionID)
	m.rates.forget(connectionID)
	return nil
}

func (m *Memory) Subscribe(_ context.Context, connectionID, userID string, topics []string) error {
	topics, err := checkTopics(connectionID, topics)
	if err != nil {
		return err
	}
	if err := checkOptionalUserID(userID); err != nil {
		return err
	}
	now := m.now()
	sub := memSubscription{connID: connectionID, userID: userID, at: now.UTC(), expires: expiresAt(now)}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, topic := range topics {
		subs := m.topics[topic]
		i, found := slices.BinarySearchFunc(subs, connectionID, compareConnID)
		switch {
		case found && live(subs[i].expires, now):
			subs[i].expires = sub.expires
			subs[i].userID = userID // as DynamoDB's refresh sets it
		case found: // expired: a new subscription, as in DynamoDB
			subs[i] = sub
		default:
			m.topics[topic] = slices.Insert(subs, i, sub)
		}
		if m.byConn[connectionID] == nil {
			m.byConn[connectionID] = make(map[string]struct{})
		}
		m.byConn[connectionID][topic] = struct{}{}
	}
	return nil
}

func (m *Memory) Unsubscribe(_ context.Context, connectionID string, topics []string) error {
	topics, err := checkTopics(connectionID, topics)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, topic := range topics {
		m.removeSubscription(topic, connectionID)
		delete(m.byConn[connectionID], topic)
	}
	if len(m.byConn[connectionID]) == 0 {
		delete(m.byConn, connectionID)
	}
	return nil
}

// removeSubscription drops one entry of the topic index; m.mu is held.
func (m *Memory) removeSubscription(topic, connectionID string) {
	subs := m.topics[topic]
	i, found := slices.BinarySearchFunc(subs, connectionID, compareConnID)
	if !found {
		return
	}
	if subs = slices.Delete(subs, i, i+1); len(subs) == 0 {
		delete(m.topics, topic)
	} else {
		m.topics[topic] = subs
	}
}

func (m *Memory) Subscribers(_ context.Context, topic string, limit int, pageToken string) (Page, error) {
	after, err := checkSubscribersArgs(topic, limit, pageToken)
	if err != nil {
		return Page{}, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	subs := m.topics[topic]
	start, found := slices.BinarySearchFunc(subs, after, compareConnID)
	if found {
		start++
	}
	var page Page
	for _, s := range subs[start:] {
		if !live(s.expires, now) {
			continue
		}
		if len(page.Subscriptions) == limit {
			// A live subscription beyond this page: there is a next one.
			page.NextToken = encodePageToken(topic, page.Subscriptions[limit-1].ConnectionID)
			break
		}
		page.Subscriptions = append(page.Subscriptions, Subscription{ConnectionID: s.connID, Topic: topic, UserID: s.userID, SubscribedAt: s.at})
	}
	return page, nil
}

func (m *Memory) CountSubscribers(_ context.Context, topic string) (connections, users int, err error) {
	if err := checkTopic(topic); err != nil {
		return 0, 0, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	seen := make(map[string]struct{})
	for _, s := range m.topics[topic] {
		if !live(s.expires, now) {
			continue
		}
		connections++
		if s.userID != "" {
			seen[s.userID] = struct{}{}
		}
	}
	return connections, len(seen), nil
}

// UserConnections lists the user's connections whose record is live: the
// membership expires with the connection, as the DynamoDB item does.
func (m *Memory) UserConnections(_ context.Context, userID string, limit int, pageToken string) (ConnectionPage, error) {
	after, err := checkUserConnectionsArgs(userID, limit, pageToken)
	if err != nil {
		return ConnectionPage{}, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := m.users[userID]
	start, found := slices.BinarySearch(ids, after)
	if found {
		start++
	}
	var page ConnectionPage
	for _, id := range ids[start:] {
		if !live(m.conns[id].expires, now) {
			continue
		}
		if len(page.ConnectionIDs) == limit {
			page.NextToken = encodeUserPageToken(userID, page.ConnectionIDs[limit-1])
			break
		}
		page.ConnectionIDs = append(page.ConnectionIDs, id)
	}
	return page, nil
}

func (m *Memory) Topics(_ context.Context, connectionID string) ([]string, error) {
	if err := checkConnectionID(connectionID); err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var topics []string
	for topic := range m.byConn[connectionID] {
		subs := m.topics[topic]
		if i, found := slices.BinarySearchFunc(subs, connectionID, compareConnID); found && live(subs[i].expires, now) {
			topics = append(topics, topic)
		}
	}
	slices.Sort(topics)
	return topics, nil
}

func (m *Memory) Ping(context.Context) error { return nil }

func compareConnID(s memSubscription, id string) int {
	return strings.Compare(s.connID, id)
}

// cloneConnection copies AllowedTopics and PublishTopics, keeping nil (any
// topic) distinct from empty (no topic), and normalises the time as
// DynamoDB round-trips it.
func cloneConnection(c Connection) Connection {
	c.AllowedTopics = slices.Clone(c.AllowedTopics)
	c.PublishTopics = slices.Clone(c.PublishTopics)
	c.ConnectedAt = c.ConnectedAt.UTC()
	return c
}
