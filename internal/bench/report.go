package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
)

// ParseScenarios parses a comma-separated list of scenario numbers.
func ParseScenarios(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 6 {
			return nil, fmt.Errorf("scenario %q: want a number from 1 to 6", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Write prints res as a table to w and saves it in dir: results.txt (the
// table), results.json and results.png (the chart).
func Write(w io.Writer, dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var table bytes.Buffer
	if err := writeTable(&table, res); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.txt"), table.Bytes(), 0o644); err != nil {
		return err
	}
	png, err := os.Create(filepath.Join(dir, "results.png"))
	if err != nil {
		return err
	}
	if err := writeChart(png, res); err != nil {
		png.Close()
		return fmt.Errorf("chart: %w", err)
	}
	if err := png.Close(); err != nil {
		return err
	}
	_, err = w.Write(table.Bytes())
	return err
}

// row is one line of the table: a scenario, its case, the figure measured,
// what it is compared with, and the target.
type row struct {
	scenario, name, result, compare, target string
}

func writeTable(w io.Writer, res *Results) error {
	rows := tableRows(res)
	m := res.Machine
	fmt.Fprintf(w, "wsgateway fan-out benchmark — %s, %d cores, %s, %s, load average %.1f → %.1f\n\n", m.CPU, m.Cores, m.GoVersion, m.Date.Format("2006-01-02 15:04 MST"), m.Load[0], m.Load[1])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tcase\tresult\tcompared with\ttarget")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.scenario, r.name, r.result, r.compare, r.target)
	}
	return tw.Flush()
}

func tableRows(res *Results) []row {
	var rows []row
	for _, a := range res.AWS {
		rows = append(rows, row{
			"1", fmt.Sprintf("AWS model, S=%d", a.Subscribers),
			fmt.Sprintf("%v to the last subscriber", a.Median),
			fmt.Sprintf("floor %v: %.2f×; %d lost; %.1f%% of calls 429; %.1f cores busy", a.Floor, a.Ratio, a.Failed, 100*a.Throttled/max(1, a.Calls), a.Cores),
			"≤ 1.15× floor, 0 lost",
		})
	}
	for _, a := range res.AWS {
		projected := ""
		if a.BaselineProjected {
			projected = " (projected)"
		}
		rows = append(rows, row{"2", fmt.Sprintf("baseline, S=%d", a.Subscribers), fmt.Sprintf("%v%s", a.Baseline, projected), fmt.Sprintf("ours %.0f× faster", a.Speedup), ""})
	}
	var grpc float64 // deliveries/s of the gRPC row the baseline and the reference compare with
	for _, c := range res.CPU {
		if c.Case == "gRPC" && (grpc == 0 || c.Subscribers == res.Config.CompareSize) {
			grpc = c.DeliveriesPerSec
		}
	}
	for _, c := range res.CPU {
		compare := fmt.Sprintf("p50/p99/max %v/%v/%v; RPC p50 %v; CPU %v + %v", c.Latency.P50, c.Latency.P99, c.Latency.Max, c.RPC.P50, c.CPU.Stack, c.CPU.Subscribers)
		switch c.Case {
		case "baseline":
			compare = fmt.Sprintf("ours %.1f× faster; ", grpc/c.DeliveriesPerSec) + compare
		case "plain net/http":
			compare = fmt.Sprintf("ours at %.2f× of it; ", grpc/c.DeliveriesPerSec) + compare
		case "naive SDK":
			compare = fmt.Sprintf("ours %.2f× of it; ", grpc/c.DeliveriesPerSec) + compare
		}
		target := ""
		if c.Case == "gRPC" && c.Subscribers == res.Config.CompareSize {
			target = "≥ 25 000/s, p99 ≤ 50 ms"
		}
		rows = append(rows, row{"3", fmt.Sprintf("%s, S=%d, M=%d", c.Case, c.Subscribers, c.Messages), fmt.Sprintf("%.0f deliveries/s", c.DeliveriesPerSec), compare, target})
	}
	if s := res.SDK; s != nil {
		rows = append(rows, row{"4", "SDK vs net/http", fmt.Sprintf("%.0f vs %.0f calls/s", s.SDK, s.Plain), fmt.Sprintf("%.2f× (default SDK client %.0f/s)", s.Ratio, s.DefaultSDK), "≤ 1.5×"})
	}
	if l := res.Lookup; l != nil {
		rows = append(rows, row{"5", fmt.Sprintf("lookup, C=%d, T=%d", l.Connections, l.Topics),
			fmt.Sprintf("%.0f items, %.1f RCU per publish", l.Ours.ItemsRead, l.Ours.Capacity),
			fmt.Sprintf("seed's Scan: %.0f items, %.1f RCU (%.0f× the capacity)", l.Seed.ItemsRead, l.Seed.Capacity, l.Seed.Capacity/l.Ours.Capacity),
			fmt.Sprintf("items = the topic's %d", l.Connections/l.Topics)})
	}
	if m := res.Memory; m != nil {
		rows = append(rows, row{"6", fmt.Sprintf("emulator RSS, %d idle WebSockets", m.Connections),
			fmt.Sprintf("%.1f KiB per connection", m.PerConnectionIdle/1024),
			fmt.Sprintf("%.1f KiB before garbage collection", m.PerConnection/1024), "≤ 16 KiB"})
		rows = append(rows, row{"6", fmt.Sprintf("publisher RSS, fan-out to %d", m.Delivered),
			fmt.Sprintf("%.1f MiB at peak", float64(m.PublisherPeak)/(1<<20)),
			fmt.Sprintf("%.1f MiB at rest", float64(m.PublisherIdle)/(1<<20)), ""})
	}
	return rows
}
