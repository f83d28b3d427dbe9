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

// report is a run's table and where it ran; the load average before and
// after says what else the machine was doing, which moves absolute figures.
type report struct {
	machine string
	load    float64
	rows    []row
}

func newReport() report {
	cpu := "unknown CPU"
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if info, err := fs.CPUInfo(); err == nil && len(info) > 0 {
			cpu = info[0].ModelName
		}
	}
	return report{machine: fmt.Sprintf("%s, %d cores, %s, %s", cpu, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST")), load: loadAverage()}
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
	var b bytes.Buffer
	fmt.Fprintf(&b, "wsgateway fan-out benchmark — %s, load average %.1f → %.1f\n\n", r.machine, r.load, loadAverage())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tcase\tresult\tcompared with\ttarget")
	for _, r := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.scenario, r.name, r.result, r.compare, r.target)
	}
	tw.Flush()
	os.Stdout.Write(b.Bytes())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.txt"), b.Bytes(), 0o644)
}

// quantile is the q-quantile of d (0 < q ≤ 1), which it sorts.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[max(0, int(math.Ceil(q*float64(len(d))))-1)].Round(10 * time.Microsecond)
}

// micros shows a duration in microseconds, one decimal.
func micros(d time.Duration) string { return fmt.Sprintf("%.1fµs", d.Seconds()*1e6) }
