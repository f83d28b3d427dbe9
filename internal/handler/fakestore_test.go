package handler

// TEMPORARY: stands in for store.NewMemory until it lands.

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/wsgateway/wsgateway/internal/store"
)

type fakeMemory struct {
	mu    sync.Mutex
	conns map[string]store.Connection
	subs  map[string][]string
}

func newFakeMemory() *fakeMemory {
	return &fakeMemory{conns: map[string]store.Connection{}, subs: map[string][]string{}}
}

func (m *fakeMemory) PutConnection(_ context.Context, c store.Connection) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conns[c.ID] = c
	return nil
}

func (m *fakeMemory) GetConnection(_ context.Context, id string) (store.Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.conns[id]
	if !ok {
		return c, fmt.Errorf("connection %s: %w", id, store.ErrNotFound)
	}
	return c, nil
}

func (m *fakeMemory) DeleteConnection(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.conns, id)
	delete(m.subs, id)
	return nil
}

func (m *fakeMemory) Subscribe(_ context.Context, id string, topics []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range topics {
		if !slices.Contains(m.subs[id], t) {
			m.subs[id] = append(m.subs[id], t)
		}
	}
	return nil
}

func (m *fakeMemory) Unsubscribe(_ context.Context, id string, topics []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[id] = slices.DeleteFunc(m.subs[id], func(t string) bool { return slices.Contains(topics, t) })
	return nil
}

func (m *fakeMemory) Topics(_ context.Context, id string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(slices.Values(m.subs[id])), nil
}
