package emulator

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Faults makes the emulator fail on purpose, the way AWS does now and then,
// so that tests can see how callers cope. The zero value injects nothing.
type Faults struct {
	// Throttle and ServerError are the fractions (0 to 1) of management
	// calls answered 429 LimitExceededException and 500
	// InternalServerErrorException; such a call has no other effect.
	Throttle, ServerError float64
	// LoseDisconnect is the fraction (0 to 1) of ended connections whose
	// $disconnect never fires: AWS only promises its best effort.
	LoseDisconnect float64
	// Seed seeds the draws, so that a test sees the same faults on every
	// run: a sequence of calls (or of disconnects) gets the same outcomes
	// for the same seed.
	Seed uint64
}

// Quota is the account's throttle on management calls, a token bucket
// shared by every call: AWS's default is Rate 10000 and Burst 5000
// (2500 and 1250 in some newer Regions). The zero value is unlimited.
type Quota struct {
	Rate  float64 // calls per second
	Burst int     // calls allowed at once after a quiet spell
}

// validate reports every setting that cannot be meant.
func (c Config) validate() error {
	var errs []error
	for _, f := range []struct {
		name  string
		value float64
	}{
		{"Faults.Throttle", c.Faults.Throttle},
		{"Faults.ServerError", c.Faults.ServerError},
		{"Faults.LoseDisconnect", c.Faults.LoseDisconnect},
	} {
		if !(f.value >= 0 && f.value <= 1) {
			errs = append(errs, fmt.Errorf("%s is %v, want a fraction from 0 to 1", f.name, f.value))
		}
	}
	if sum := c.Faults.Throttle + c.Faults.ServerError; sum > 1 {
		errs = append(errs, fmt.Errorf("Faults.Throttle + Faults.ServerError is %v, more than every call", sum))
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"IdleTimeout", c.IdleTimeout},
		{"MaxConnectionDuration", c.MaxConnectionDuration},
		{"WriteTimeout", c.WriteTimeout},
		{"ManagementLatency", c.ManagementLatency},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("%s is negative (%v)", d.name, d.value))
		}
	}
	q := c.Quota
	switch {
	case !(q.Rate >= 0) || math.IsInf(q.Rate, 0):
		errs = append(errs, fmt.Errorf("Quota.Rate is %v, want calls per second, or 0 for no quota", q.Rate))
	case q.Burst < 0:
		errs = append(errs, fmt.Errorf("Quota.Burst is negative (%d)", q.Burst))
	case q.Rate > 0 && q.Burst == 0:
		errs = append(errs, errors.New("Quota.Burst is 0: no call would ever pass; AWS's is 5000"))
	case q.Rate == 0 && q.Burst > 0:
		errs = append(errs, errors.New("Quota.Burst is set without a Quota.Rate"))
	}
	return errors.Join(errs...)
}

// dice draws numbers in [0, 1) from a seeded source shared by concurrent
// callers.
type dice struct {
	mu  sync.Mutex
	rng *rand.Rand
}

// newDice returns nil when nothing is to be drawn for, which keeps the
// disabled case to one nil check. Each stream is independent, so that the
// faults of management calls do not depend on how they interleave with
// disconnects.
func newDice(fraction float64, seed, stream uint64) *dice {
	if fraction == 0 {
		return nil
	}
	return &dice{rng: rand.New(rand.NewPCG(seed, stream))}
}

func (d *dice) roll() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.Float64()
}

// newQuota returns the account's token bucket, full, or nil for no quota
// so that an unlimited emulator costs nothing per call. x/time/rate's
// Limiter is the same algorithm AWS documents for its account throttle.
func newQuota(q Quota) *rate.Limiter {
	if q.Rate == 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(q.Rate), q.Burst)
}
