package bench

import (
	"encoding/json"
	"math"
	"slices"
	"time"
)

// Millis is a duration that JSON shows in milliseconds.
type Millis time.Duration

func (m Millis) MarshalJSON() ([]byte, error) {
	return json.Marshal(math.Round(time.Duration(m).Seconds()*1e6) / 1e3)
}

func (m *Millis) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*m = Millis(ms * float64(time.Millisecond))
	return nil
}

func (m Millis) String() string { return fmtDuration(time.Duration(m)) }

// Percentiles summarize a set of durations.
type Percentiles struct {
	P50 Millis `json:"p50_ms"`
	P99 Millis `json:"p99_ms"`
	Max Millis `json:"max_ms"`
	N   int    `json:"n"`
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) Millis {
		return Millis(d[min(len(d)-1, int(math.Ceil(q*float64(len(d))))-1)])
	}
	return Percentiles{P50: at(0.50), P99: at(0.99), Max: Millis(d[len(d)-1]), N: len(d)}
}

func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}
