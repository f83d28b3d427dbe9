package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process of the benchmark: a stack (this binary in its
// stack role), dynalite or the publisher binary. Running the servers apart
// from the subscribers gives each its own file descriptors (10 000
// WebSockets are 20 000 sockets when both ends share a process) and its own
// RSS to measure.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser // closed to ask a stack to stop
	done  chan error
	log   *bytes.Buffer // stderr, for errors
	mu    sync.Mutex    // guards log
}

// startProc starts name with args and env added to this process's
// environment. The first line it prints goes to first, if not nil.
func startProc(name string, args []string, env []string, first func(line []byte) error) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1), log: new(bytes.Buffer)}
	cmd.Stderr = &limitedWriter{w: p.log, n: 64 << 10, mu: &p.mu}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	lines := make(chan []byte, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadBytes('\n')
		lines <- line
		io.Copy(io.Discard, r)
	}()
	go func() { p.done <- cmd.Wait() }()
	if first == nil {
		return p, nil
	}
	select {
	case line := <-lines:
		if err := first(line); err != nil {
			p.stop()
			return nil, fmt.Errorf("%s: %w (stderr: %s)", name, err, p.stderr())
		}
		return p, nil
	case err := <-p.done:
		p.done <- err
		return nil, fmt.Errorf("%s exited: %v (stderr: %s)", name, err, p.stderr())
	case <-time.After(60 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s did not start within a minute (stderr: %s)", name, p.stderr())
	}
}

// stackEnv, in the environment of a process the benchmark started, holds
// the configuration of the stack it is to serve (JSON).
const stackEnv = "WSGATEWAY_BENCH_STACK"

// startStackProc runs exe, this binary, as a stack (see ServeChild).
func startStackProc(exe string, cfg StackConfig) (*proc, StackAddrs, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, StackAddrs{}, err
	}
	var addrs StackAddrs
	p, err := startProc(exe, nil, []string{stackEnv + "=" + string(b)}, func(line []byte) error {
		return json.Unmarshal(line, &addrs)
	})
	return p, addrs, err
}

// IsChild reports whether this process is a stack the benchmark started;
// its main must then call ServeChild and nothing else.
func IsChild() bool { return os.Getenv(stackEnv) != "" }

// ServeChild serves the stack the benchmark asked for until the benchmark
// closes this process's stdin or ctx ends.
func ServeChild(ctx context.Context) error {
	var cfg StackConfig
	if err := json.Unmarshal([]byte(os.Getenv(stackEnv)), &cfg); err != nil {
		return fmt.Errorf("%s: %w", stackEnv, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ServeStack(ctx, cfg, os.Stdout)
}

// stop asks the process to end (stdin closed, then SIGTERM) and waits.
func (p *proc) stop() error {
	p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signaled() {
			return nil // it had no handler for SIGTERM: stopped as asked
		}
		if err != nil {
			return fmt.Errorf("%s: %w (stderr: %s)", p.name, err, p.stderr())
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop within 15s", p.name)
	}
}

// rss reads the process's resident set and its peak so far, in bytes.
func (p *proc) rss() (now, peak int64, err error) {
	return procRSS(p.cmd.Process.Pid)
}

func procRSS(pid int) (now, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("RSS needs Linux's /proc: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		key, value, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch key {
		case "VmRSS":
			now = kb << 10
		case "VmHWM":
			peak = kb << 10
		default:
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, key, err)
		}
	}
	return now, peak, nil
}

// resetPeak restarts VmHWM at the current RSS (Linux 4.0+), so that a peak
// read later belongs to what happened in between.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// stderr returns what the process wrote to its stderr so far (the first
// 64 KiB).
func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w  io.Writer
	n  int
	mu *sync.Mutex
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		l.w.Write(p[:k])
	}
	return len(p), nil
}

// waitCtx waits for d or ctx.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cpuUse is the CPU time a stack's process and this one have used.
type cpuUse struct{ stack, self time.Duration }

func readCPU(stackPID int) (cpuUse, error) {
	stack, err := cpuTime(stackPID)
	if err != nil {
		return cpuUse{}, err
	}
	self, err := cpuTime(0)
	return cpuUse{stack, self}, err
}

// since is the CPU time used between start and u.
func (u cpuUse) since(start cpuUse) cpuUse {
	return cpuUse{u.stack - start.stack, u.self - start.self}
}

// cpuTime is the CPU time (user and system) pid has used so far; 0 is this
// process.
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU time needs Linux's /proc: %w", err)
	}
	// The command, field 2, is in parentheses and may hold spaces.
	_, rest, ok := strings.Cut(string(b), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime and stime, fields 14 and 15
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// clockTicks is Linux's USER_HZ, the unit of /proc's CPU times: 100 on
// every architecture Go supports.
const clockTicks = 100

// profiler brackets CPU profiles of a stack (see pprofMux) and saves them
// in dir; the zero value profiles nothing.
type profiler struct {
	addr, dir string
}

func (pr profiler) start() {
	if pr.dir == "" {
		return
	}
	if resp, err := http.Post("http://"+pr.addr+"/profile/start", "", nil); err == nil {
		resp.Body.Close()
	}
}

// stop saves the profile as dir/name.pprof.
func (pr profiler) stop(name string) error {
	if pr.dir == "" {
		return nil
	}
	resp, err := http.Post("http://"+pr.addr+"/profile/stop", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(pr.dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(pr.dir, name+".pprof"), b, 0o644)
}
