package handler

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

func TestSubscriptionLimit(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	if err := mem.PutConnection(context.Background(), store.Connection{ID: connID, ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	r := NewRoutes(mem, discard())
	r.MaxSubscriptions = 3
	subscribe := func(body string) frame {
		t.Helper()
		resp, err := r.Subscribe(context.Background(), message(t, "subscribe", body))
		return answered(t, resp, err)
	}

	if f := subscribe(`{"action":"subscribe","topics":["a","b"]}`); f.Type != wsproto.TypeSubscribed {
		t.Fatalf("first subscribe: %+v", f)
	}
	// Topics already held do not count again.
	if f := subscribe(`{"action":"subscribe","topics":["a","b","c"]}`); f.Type != wsproto.TypeSubscribed {
		t.Fatalf("subscribe up to the limit: %+v", f)
	}
	f := subscribe(`{"action":"subscribe","topics":["a","d"]}`)
	if f.Type != wsproto.TypeError || f.Code != wsproto.CodeLimitExceeded {
		t.Fatalf("subscribe past the limit: %+v, want limit_exceeded", f)
	}
	if got := storedTopics(t, mem); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("stored topics = %v after a refused subscribe, want [a b c]", got)
	}
}
