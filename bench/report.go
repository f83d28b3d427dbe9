package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/prometheus/procfs"
)

// row is one line of the table: the scenario, its case, the figure
// measured, what it is compared with, and the target.
type row struct{ scenario, name, result, compare, target string }

// report is a run's table and where it ran.
type report struct {
	machine machine
	rows    []row
}

// machine is where the run happened. load is the one-minute load average
// before and after: what else the machine was doing, which moves absolute
// figures.
type machine struct {
	cpu   string
	cores int
	date  time.Time
	load  [2]float64
}

func thisMachine() machine {
	m := machine{cpu: "unknown", cores: runtime.NumCPU(), date: time.Now().UTC()}
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if info, err := fs.CPUInfo(); err == nil && len(info) > 0 {
			m.cpu = info[0].ModelName
		}
	}
	m.load[0] = loadAverage()
	return m
}

// loadAverage is Linux's one-minute load average, or 0 where there is none.
func loadAverage() float64 {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return 0
	}
	return l.Load1
}

// write prints the table to stdout and saves it as dir/results.txt.
func (r report) write(dir string) error {
	r.machine.load[1] = loadAverage()
	var b bytes.Buffer
	m := r.machine
	fmt.Fprintf(&b, "wsgateway fan-out benchmark — %s, %d cores, %s, %s, load average %.1f → %.1f\n\n",
		m.cpu, m.cores, runtime.Version(), m.date.Format("2006-01-02 15:04 MST"), m.load[0], m.load[1])
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tcase\tresult\tcompared with\ttarget")
	for _, r := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.scenario, r.name, r.result, r.compare, r.target)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	os.Stdout.Write(b.Bytes())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.txt"), b.Bytes(), 0o644)
}

// percentiles are the p50, p99 and max of a set of durations.
type percentiles struct{ p50, p99, max time.Duration }

func percentilesOf(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[max(0, int(math.Ceil(q*float64(len(d))))-1)] }
	return percentiles{at(0.50), at(0.99), d[len(d)-1]}
}

func (p percentiles) String() string {
	return fmt.Sprintf("%v/%v/%v", round(p.p50), round(p.p99), round(p.max))
}

// round keeps three or four significant digits of a duration.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(10 * time.Microsecond)
	}
}

// micros shows a duration in microseconds, one decimal.
func micros(d time.Duration) string { return fmt.Sprintf("%.1fµs", d.Seconds()*1e6) }
