package emulator

import (
	"testing"
	"time"
)

// TestBucketRefills drives the quota's token bucket on a fake clock: the
// burst passes at once, then calls pass at the rate.
func TestBucketRefills(t *testing.T) {
	t.Parallel()
	b := newQuota(Quota{Rate: 10, Burst: 3}) // a token every 100 ms
	start := time.Unix(1e9, 0)
	at := func(d time.Duration) time.Time { return start.Add(d) }

	steps := []struct {
		at   time.Duration
		pass bool
	}{
		{0, true}, {0, true}, {0, true}, // the burst
		{0, false},
		{50 * time.Millisecond, false}, // half a token
		{100 * time.Millisecond, true},
		{100 * time.Millisecond, false},
		{time.Hour, true}, // a quiet hour refills only up to the burst
		{time.Hour, true},
		{time.Hour, true},
		{time.Hour, false},
		{time.Hour - time.Second, false}, // a clock going back refills nothing
	}
	for i, s := range steps {
		if got := b.AllowN(at(s.at), 1); got != s.pass {
			t.Errorf("step %d at +%v: AllowN = %v, want %v", i, s.at, got, s.pass)
		}
	}
}

func TestNoQuotaIsNoBucket(t *testing.T) {
	t.Parallel()
	if b := newQuota(Quota{}); b != nil {
		t.Errorf("newQuota(zero) = %+v, want nil: no quota must cost nothing", b)
	}
	if d := newDice(0, 1, 1); d != nil {
		t.Errorf("newDice(0) = %+v, want nil: no faults must cost nothing", d)
	}
}
