package store_test

import (
	"testing"
	"time"

	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/store/storetest"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return store.NewMemory(store.WithClock(now))
	})
}

// A restarted memory store cannot keep its topics' positions: it must start
// new epochs, so that clients do not take its offsets for the old ones.
func TestMemoryRestartStartsNewEpochs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	before, err := store.NewMemory().NextPosition(ctx, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	restarted := store.NewMemory()
	after, err := restarted.NextPosition(ctx, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if after.Offset != 1 || after.Epoch == before.Epoch {
		t.Errorf("after a restart: %+v, want offset 1 of an epoch other than %q", after, before.Epoch)
	}
	if got, err := restarted.Positions(ctx, []string{"a"}, time.Hour); err != nil || got["a"] != after {
		t.Errorf("Positions(a) = %v, %v; want %+v", got, err, after)
	}
}
