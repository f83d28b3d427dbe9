// Package bench is the harness behind `make bench`: it drives the real local
// stack (the emulated API Gateway, the handlers, the store, the publisher)
// over real sockets, with real WebSocket subscribers, and measures what a
// publish costs (issue 6, docs/performance.md).
//
// Servers run in child processes (this binary in its stack role, dynalite,
// the publisher binary) and the subscribers in this one, so that each has
// its own file descriptors and RSS; all of them share this machine's CPUs.
// Every figure of a report comes from one run: compare ratios across
// machines, not absolute numbers.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/wsgateway/wsgateway/internal/config"
)

// Config says what to run. The zero value of a field takes the default in
// DefaultConfig.
type Config struct {
	// Scenario 1, the AWS model: added latency per management call, the
	// account quota, and the topic sizes.
	Latency    time.Duration
	QuotaRate  float64
	QuotaBurst int
	AWSSizes   []int
	// Scenario 3, CPU cost: topic sizes, and how many deliveries each row
	// aims at (messages = Deliveries / size, at least 5).
	CPUSizes   []int
	Deliveries int
	// CompareSize is the topic size of the REST and baseline rows.
	CompareSize int
	// Scenario 4: how long each client posts.
	SDKDuration time.Duration
	// Scenario 5: connections over topics in DynamoDB.
	LookupConnections, LookupTopics int
	// Scenario 6: idle connections to measure.
	IdleConnections int
	// Only, when set, runs just the scenarios it names (1-6).
	Only []int
	// Profiles, when set, is a directory for CPU profiles of the stacks,
	// each covering exactly what a scenario measures.
	Profiles string
	// Progress, when set, gets a line per step.
	Progress io.Writer

	exe string     // this binary, started in its stack role
	aws aws.Config // local credentials, as the devstack signs with
}

// DefaultConfig is `make bench`.
func DefaultConfig() Config {
	return Config{
		Latency:           15 * time.Millisecond,
		QuotaRate:         10000,
		QuotaBurst:        1000,
		AWSSizes:          []int{1000, 10000},
		CPUSizes:          []int{100, 1000, 5000},
		Deliveries:        60000,
		CompareSize:       1000,
		SDKDuration:       3 * time.Second,
		LookupConnections: 20000,
		LookupTopics:      200,
		IdleConnections:   10000,
	}
}

// withDefaults fills the zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	if c.Latency == 0 {
		c.Latency = d.Latency
	}
	if c.QuotaRate == 0 {
		c.QuotaRate = d.QuotaRate
	}
	if c.SDKDuration == 0 {
		c.SDKDuration = d.SDKDuration
	}
	if len(c.AWSSizes) == 0 {
		c.AWSSizes = d.AWSSizes
	}
	if len(c.CPUSizes) == 0 {
		c.CPUSizes = d.CPUSizes
	}
	set(&c.QuotaBurst, d.QuotaBurst)
	set(&c.Deliveries, d.Deliveries)
	set(&c.CompareSize, d.CompareSize)
	set(&c.LookupConnections, d.LookupConnections)
	set(&c.LookupTopics, d.LookupTopics)
	set(&c.IdleConnections, d.IdleConnections)
	return c
}

func (c Config) messages(size int) int { return max(5, c.Deliveries/size) }

func (c Config) runs(scenario int) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, s := range c.Only {
		if s == scenario {
			return true
		}
	}
	return false
}

func (c Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

// Results are everything one run measured.
type Results struct {
	Machine Machine       `json:"machine"`
	Config  ConfigShown   `json:"config"`
	AWS     []AWSResult   `json:"aws,omitempty"`
	CPU     []CPUResult   `json:"cpu,omitempty"`
	SDK     *SDKResult    `json:"sdk,omitempty"`
	Lookup  *LookupResult `json:"lookup,omitempty"`
	Memory  *MemoryResult `json:"memory,omitempty"`
}

// Machine is where the run happened.
type Machine struct {
	CPU       string    `json:"cpu"`
	Cores     int       `json:"cores"`
	GoVersion string    `json:"go"`
	OS        string    `json:"os"`
	Date      time.Time `json:"date"`
	// Load is the one-minute load average before and after the run: what
	// else the machine was doing, which moves absolute figures.
	Load [2]float64 `json:"load"`
}

// ConfigShown is the part of Config a reader needs to read the numbers.
type ConfigShown struct {
	Latency     Millis  `json:"latency_ms"`
	QuotaRate   float64 `json:"quota_rate"`
	QuotaBurst  int     `json:"quota_burst"`
	CompareSize int     `json:"compare_size"`
}

// Run runs the scenarios. exe is this binary, which the stacks run as
// (see ServeStack).
func Run(ctx context.Context, cfg Config, exe string) (*Results, error) {
	awsCfg, err := config.Config{Region: "us-east-1"}.AWS(ctx, true)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.exe, cfg.aws = exe, awsCfg
	res := &Results{
		Machine: machine(),
		Config:  ConfigShown{Latency: Millis(cfg.Latency), QuotaRate: cfg.QuotaRate, QuotaBurst: cfg.QuotaBurst, CompareSize: cfg.CompareSize},
	}
	if cfg.runs(1) || cfg.runs(2) {
		if res.AWS, err = runAWS(ctx, cfg); err != nil {
			return res, fmt.Errorf("scenarios 1 and 2: %w", err)
		}
	}
	if cfg.runs(3) {
		if res.CPU, err = runCPU(ctx, cfg); err != nil {
			return res, fmt.Errorf("scenario 3: %w", err)
		}
	}
	if cfg.runs(4) {
		r, err := runSDK(ctx, cfg)
		if err != nil {
			return res, fmt.Errorf("scenario 4: %w", err)
		}
		res.SDK = &r
	}
	if cfg.runs(5) {
		r, err := runLookup(ctx, cfg)
		if err != nil {
			return res, fmt.Errorf("scenario 5: %w", err)
		}
		res.Lookup = &r
	}
	if cfg.runs(6) {
		r, err := runMemory(ctx, cfg)
		if err != nil {
			return res, fmt.Errorf("scenario 6: %w", err)
		}
		res.Memory = &r
	}
	res.Machine.Load[1] = loadAverage()
	return res, nil
}

func machine() Machine {
	m := Machine{
		CPU:       "unknown",
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
		Date:      time.Now().UTC().Truncate(time.Second),
	}
	m.Load[0] = loadAverage()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAverage is Linux's one-minute load average, or 0 where there is none.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	load, _ := strconv.ParseFloat(f, 64)
	return load
}
