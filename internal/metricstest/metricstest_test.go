package metricstest_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsgateway/wsgateway/internal/metricstest"
)

// recorder notes a Fatalf and stops its goroutine, as testing.T does.
type recorder struct {
	testing.TB
	failed atomic.Bool
}

func (r *recorder) Fatalf(string, ...any) { r.failed.Store(true); runtime.Goexit() }

func fails(t *testing.T, f func(testing.TB)) bool {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); f(r) }()
	<-done
	return r.failed.Load()
}

func TestScrape(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calls_total", Help: "h"}, []string{"method", "code"})
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "up", Help: "h"})
	took := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "took_seconds", Help: "h"})
	reg.MustRegister(calls, up, took)
	calls.WithLabelValues("get", "200").Add(3)
	calls.WithLabelValues("get", "500").Add(1)
	calls.WithLabelValues("put", "200").Add(7)
	up.Set(2.5)
	took.Observe(0.1)
	took.Observe(0.2)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	f := metricstest.Scrape(t, srv.URL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"calls_total", []string{"method", "get", "code", "500"}, 1},
		{"calls_total", []string{"method", "put"}, 7},
		{"up", nil, 2.5},
		{"took_seconds", nil, 2},
	} {
		if got := f.Value(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if h := f.Histogram(t, "took_seconds"); h.GetSampleSum() < 0.29 || h.GetSampleSum() > 0.31 {
		t.Errorf("took_seconds sum %v, want 0.3", h.GetSampleSum())
	}

	// A query must pick exactly one series.
	for name, labels := range map[string][]string{
		"ambiguous":   {"method", "get"},
		"no match":    {"method", "delete"},
		"odd labels":  {"method"},
		"no such one": nil,
	} {
		metric := "calls_total"
		if name == "no such one" {
			metric = "nope"
		}
		if !fails(t, func(tb testing.TB) { f.Value(tb, metric, labels...) }) {
			t.Errorf("%s: Value(%s%v) did not fail", name, metric, labels)
		}
	}
	if !fails(t, func(tb testing.TB) { f.Histogram(tb, "up") }) {
		t.Error("Histogram of a gauge did not fail")
	}
}

func TestScrapeWantsMetrics(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]http.HandlerFunc{
		"error status": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) },
		"not metrics": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<p>hi"))
		},
	} {
		srv := httptest.NewServer(h)
		if !fails(t, func(tb testing.TB) { metricstest.Scrape(tb, srv.URL) }) {
			t.Errorf("%s: Scrape did not fail", name)
		}
		srv.Close()
	}
}
