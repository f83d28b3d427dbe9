package bench

import (
	"fmt"
	"image/color"
	"io"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Bar colours: the product, what it is compared with, and another view of
// the product.
var (
	oursColor  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	otherColor = color.RGBA{R: 0xaa, G: 0xaa, B: 0xaa, A: 0xff}
	extraColor = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
)

// writeChart draws a panel per scenario that ran, as one PNG.
func writeChart(w io.Writer, res *Results) error {
	panels := [][]*plot.Plot{
		{awsPanel(res.AWS), cpuPanel(res.CPU), latencyPanel(res.CPU)},
		{sdkPanel(res.SDK), lookupPanel(res.Lookup), memoryPanel(res.Memory)},
	}
	const width, height = 15 * vg.Inch, 8.5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96))
	dc := draw.New(img)
	title := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 14), Handler: plot.DefaultTextHandler, XAlign: draw.XCenter}
	dc.FillText(title, vg.Point{X: width / 2, Y: height - 0.35*vg.Inch},
		fmt.Sprintf("wsgateway fan-out, make bench — %s, %d cores, %s", res.Machine.CPU, res.Machine.Cores, res.Machine.Date.Format(time.DateOnly)))
	dc.Max.Y -= 0.5 * vg.Inch
	pad := vg.Inch / 4
	tiles := draw.Tiles{Rows: 2, Cols: 3, PadX: pad, PadY: pad, PadTop: pad / 2, PadBottom: pad / 2, PadLeft: pad / 2, PadRight: pad / 2}
	canvases := plot.Align(panels, tiles, dc)
	for i := range panels {
		for j, p := range panels[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// series is one colour of bars in a panel.
type series struct {
	name   string
	values []float64
	color  color.Color
}

// bars is a panel of grouped bars, one group per label.
func bars(title, yLabel string, log bool, labels []string, ss ...series) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	if log {
		p.Y.Scale = logScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	w := vg.Points(28) // a bar; a group shares 54 points
	if len(ss) > 1 {
		w = vg.Points(54 / float64(len(ss)))
	}
	for i, s := range ss {
		values := make(plotter.Values, len(s.values))
		for j, v := range s.values {
			values[j] = v
		}
		b, err := plotter.NewBarChart(values, w)
		if err != nil {
			continue // no bars, no panel to spoil
		}
		b.Color = s.color
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(ss)-1)/2)
		p.Add(b)
		if len(ss) > 1 {
			p.Legend.Add(s.name, b)
		}
	}
	p.NominalX(labels...)
	lo, hi := 0.0, 0.0
	for _, s := range ss {
		for _, v := range s.values {
			if v > 0 && (lo == 0 || v < lo) {
				lo = v
			}
			hi = max(hi, v)
		}
	}
	// Room above the bars for the legend; bars stand on zero, which a
	// log axis cannot show.
	p.Y.Max = hi * 1.35
	if log {
		p.Y.Min, p.Y.Max = lo/2, hi*12
	}
	return p
}

func awsPanel(rs []AWSResult) *plot.Plot {
	if len(rs) == 0 {
		return nil
	}
	var labels []string
	ours, floor, base := series{"wsgateway (median)", nil, oursColor}, series{"floor S / quota", nil, extraColor}, series{"seed: one after another", nil, otherColor}
	for _, r := range rs {
		labels = append(labels, fmt.Sprint("S=", r.Subscribers))
		ours.values = append(ours.values, time.Duration(r.Median).Seconds())
		floor.values = append(floor.values, time.Duration(r.Floor).Seconds())
		base.values = append(base.values, time.Duration(r.Baseline).Seconds())
	}
	return bars("1-2. AWS model: to the last subscriber", "seconds (log)", true, labels, ours, floor, base)
}

func cpuPanel(rs []CPUResult) *plot.Plot {
	if len(rs) == 0 {
		return nil
	}
	var labels []string
	var values []float64
	for _, r := range rs {
		labels = append(labels, fmt.Sprintf("%s\nS=%d", strings.Replace(r.Case, " ", "\n", 1), r.Subscribers))
		values = append(values, r.DeliveriesPerSec)
	}
	p := bars("3. CPU-bound: deliveries per second", "deliveries/s", false, labels, series{"", values, oursColor})
	p.X.Tick.Label.Font.Size = 8
	target(p, len(labels), 25000, "target at S=1000")
	return p
}

// target draws a dashed line at y across a panel of n groups of bars.
func target(p *plot.Plot, n int, y float64, name string) {
	l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: y}, {X: float64(n) - 0.5, Y: y}})
	if err != nil {
		return
	}
	l.Color = extraColor
	l.Width = vg.Points(1.5)
	l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
	p.Add(l)
	p.Legend.Add(name, l)
	p.Y.Max = max(p.Y.Max, y*1.35)
}

func latencyPanel(rs []CPUResult) *plot.Plot {
	var labels []string
	p50, p99, top := series{"p50", nil, oursColor}, series{"p99", nil, extraColor}, series{"max", nil, otherColor}
	for _, r := range rs {
		if r.Case != "gRPC" {
			continue
		}
		labels = append(labels, fmt.Sprint("S=", r.Subscribers))
		p50.values = append(p50.values, ms(r.Latency.P50))
		p99.values = append(p99.values, ms(r.Latency.P99))
		top.values = append(top.values, ms(r.Latency.Max))
	}
	if len(labels) == 0 {
		return nil
	}
	return bars("3. Publish → receive latency (gRPC)", "milliseconds", false, labels, p50, p99, top)
}

func ms(m Millis) float64 { return time.Duration(m).Seconds() * 1000 }

func sdkPanel(r *SDKResult) *plot.Plot {
	if r == nil {
		return nil
	}
	return bars("4. PostToConnection, no-op endpoint", "calls/s", false,
		[]string{"plain net/http", "SDK (apigw)", "SDK (default)"},
		series{"", []float64{r.Plain, r.SDK, r.DefaultSDK}, oursColor})
}

func lookupPanel(r *LookupResult) *plot.Plot {
	if r == nil {
		return nil
	}
	return bars(fmt.Sprintf("5. DynamoDB reads per publish (C=%d, T=%d)", r.Connections, r.Topics), "log scale", true,
		[]string{"items read", "read capacity units"},
		series{"wsgateway: Query", []float64{r.Ours.ItemsRead, r.Ours.Capacity}, oursColor},
		series{"seed: Scan", []float64{r.Seed.ItemsRead, r.Seed.Capacity}, otherColor})
}

func memoryPanel(r *MemoryResult) *plot.Plot {
	if r == nil {
		return nil
	}
	p := bars(fmt.Sprintf("6. Emulator RSS per idle WebSocket (%d)", r.Connections), "KiB", false,
		[]string{"at rest (collected)", "just connected"},
		series{"", []float64{r.PerConnectionIdle / 1024, r.PerConnection / 1024}, oursColor})
	target(p, 2, 16, "target")
	return p
}

// logScale is a log axis that draws what lies below it, such as the base of
// a bar, at its bottom.
type logScale struct{}

func (logScale) Normalize(lo, hi, x float64) float64 {
	return plot.LogScale{}.Normalize(lo, hi, max(x, lo))
}
