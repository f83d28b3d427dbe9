// Package metricstest reads Prometheus metrics the way Prometheus scrapes
// them, for tests that check what a /metrics endpoint reports.
package metricstest

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is one scrape, parsed: the metric families by name.
type Families map[string]*dto.MetricFamily

// Scrape GETs url and parses the text exposition format, failing the test
// unless the endpoint answers 200 in that format.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if format := expfmt.ResponseFormat(resp.Header); resp.StatusCode != http.StatusOK || format.FormatType() != expfmt.TypeTextPlain {
		t.Fatalf("GET %s = %d %s, want 200 in the text format", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return mf
}

// Series is the one series of name whose labels include the given
// name-value pairs; it fails the test unless exactly one matches, so that a
// label left out of the query cannot pick a series silently.
func (f Families) Series(t testing.TB, name string, labels ...string) *dto.Metric {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("%s%v: labels come in name-value pairs", name, labels)
	}
	var found []*dto.Metric
next:
	for _, m := range f[name].GetMetric() {
		for i := 0; i < len(labels); i += 2 {
			if !hasLabel(m, labels[i], labels[i+1]) {
				continue next
			}
		}
		found = append(found, m)
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, labels, len(found))
	}
	return found[0]
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// Value is a counter's or gauge's value, or a histogram's sample count, of
// the one series Series finds.
func (f Families) Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	switch m := f.Series(t, name, labels...); {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatalf("%s: not a counter, gauge or histogram", name)
	return 0
}

// Histogram is the one histogram series Series finds.
func (f Families) Histogram(t testing.TB, name string, labels ...string) *dto.Histogram {
	t.Helper()
	h := f.Series(t, name, labels...).GetHistogram()
	if h == nil {
		t.Fatalf("%s is not a histogram", name)
	}
	return h
}
