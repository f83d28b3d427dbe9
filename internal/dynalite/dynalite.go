// Package dynalite runs a real local DynamoDB (the npm package dynalite,
// pinned in the repository's package.json) for tests.
//
// Tests talk to it through the real aws-sdk-go-v2 client, so the store's
// requests, expressions and error handling are exercised end to end without
// AWS. The server keeps its data in a LevelDB directory under the test's
// temporary directory, so Stop and Restart simulate an outage, not data loss.
//
// The endpoint is a proxy in front of dynalite that can answer requests as a
// throttling DynamoDB does (see Throttle), a fault dynalite never produces.
//
// A Recorder attached to a client records which operations it calls on
// which tables and indexes, so that tests can hold the IAM grants of a
// deployment to what the code really calls.
package dynalite

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long a starting server may take to accept
// connections; node loads dynalite in well under a second.
const startTimeout = 15 * time.Second

// Server is one running dynalite process and the proxy in front of it.
type Server struct {
	tb        testing.TB
	node      string // the node binary
	cli       string // dynalite's cli.js
	dataDir   string
	port      int    // dynalite's
	addr      string // the proxy's, which Endpoint names
	faults    faults
	transport *http.Transport // the proxy's, to dynalite

	mu    sync.Mutex
	proc  *process     // nil while stopped
	front *http.Server // the proxy; nil while stopped
}

// Start launches dynalite on a free loopback port, waits until it accepts
// connections, and puts the proxy in front of it on another port. The server
// is stopped when the test ends. Start fails the test
// when node or the npm package is missing: these tests are not optional.
func Start(tb testing.TB) *Server {
	tb.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		tb.Fatalf("dynalite: node is not on PATH (%v): install Node.js 20+, then run `npm ci` at the repo root", err)
	}
	root, err := repoRoot()
	if err != nil {
		tb.Fatalf("dynalite: %v", err)
	}
	cli := filepath.Join(root, "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		tb.Fatalf("dynalite: %s is missing: run `npm ci` at the repo root (%s)", cli, root)
	}
	s := &Server{
		tb: tb, node: node, cli: cli, dataDir: tb.TempDir(),
		// node serves one request at a time: a few connections keep it
		// busy, and one per request of a burst would only cost accepts.
		transport: &http.Transport{MaxConnsPerHost: 16, MaxIdleConnsPerHost: 16},
	}
	tb.Cleanup(s.Stop)

	// Another process may take the port between our probe and dynalite's
	// bind; dynalite then exits at once and we try another port.
	var errs []error
	for range 3 {
		s.port, err = freePort()
		if err != nil {
			tb.Fatalf("dynalite: %v", err)
		}
		if err = s.start(); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if err != nil {
		tb.Fatalf("dynalite: %v", errors.Join(errs...))
	}
	l, err := listenLoopback()
	if err != nil {
		tb.Fatalf("dynalite: proxy: %v", err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	return s
}

// Endpoint is the base URL to give the SDK client (BaseEndpoint): the
// proxy's, which stays the same across Restart.
func (s *Server) Endpoint() string {
	return "http://" + s.addr
}

// Stop kills the server and closes the proxy, so the endpoint refuses
// connections as an unreachable DynamoDB does. It is idempotent; Restart
// brings both back.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.front != nil {
		s.front.Close()
		s.front = nil
	}
	// Connections to the killed process must not be reused after Restart.
	s.transport.CloseIdleConnections()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Restart stops the server if it runs and starts it again on the same ports
// with the same data. Call it from the test's goroutine.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.tb.Fatalf("dynalite: restart: %v", err)
	}
	// The port is outside the range the kernel gives outgoing connections
	// (listenLoopback), so only another listener could have taken it
	// meanwhile, and only for a moment.
	var l net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if l, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		s.tb.Fatalf("dynalite: restart the proxy: %v", err)
	}
	s.serve(l)
}

// serve runs the proxy on l until Stop.
func (s *Server) serve(l net.Listener) {
	target := &url.URL{Scheme: "http", Host: s.nodeAddr()}
	srv := &http.Server{Handler: newProxy(&s.faults, target, s.transport)}
	s.mu.Lock()
	s.front = srv
	s.mu.Unlock()
	go srv.Serve(l) // returns when Stop closes srv
}

func (s *Server) nodeAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.node, s.cli,
		"--host", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--path", s.dataDir,
		// Tables are ACTIVE at once, so tests need not wait for them.
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0",
	)
	p, err := startProcess(cmd)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		// Its own "listening" line, not a successful dial: another test's
		// dynalite that won a race for the same port would answer a dial
		// while this one exits with EADDRINUSE.
		if strings.Contains(p.output.String(), "Dynalite listening at:") {
			s.proc = p
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before listening on %s: %v\n%s", s.nodeAddr(), p.waitErr, p.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("not listening on %s after %v\n%s", s.nodeAddr(), startTimeout, p.output.String())
		}
	}
}

// process is a started dynalite and what it printed, for failure messages.
type process struct {
	cmd     *exec.Cmd
	output  *syncBuffer
	exited  chan struct{}
	waitErr error // valid once exited is closed
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	p := &process{cmd: cmd, output: new(syncBuffer), exited: make(chan struct{})}
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// kill ends the process (and its group) and waits until it is gone, so the
// port is free for a restart.
func (p *process) kill() {
	killGroup(p.cmd)
	<-p.exited
}

// syncBuffer collects output written by exec's copying goroutine while the
// harness may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort() (int, error) {
	l, err := listenLoopback()
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// listenLoopback listens on a free loopback port below the kernel's range
// for outgoing connections' local ports, so that Restart can bind the same
// port again: in that range, any of the parallel tests' connections may
// have been given it while it was closed. Elsewhere (the range unknown,
// or no room below it) it takes any free port.
func listenLoopback() (net.Listener, error) {
	low := 32768 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const floor = 10000
	for range 100 {
		if low-floor < 1000 {
			break
		}
		port := floor + rand.IntN(low-floor)
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			return l, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// repoRoot walks up from the working directory (a package directory under
// go test) to the directory holding go.mod, where node_modules lives.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: cannot find the repo root")
		}
		dir = parent
	}
}
