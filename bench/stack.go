package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/assembly"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/devstack"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/publisher"
)

// stackEnv, in the environment of a process the bench started, holds the
// stackConfig (JSON) of the stack that process is to serve.
const stackEnv = "WSGATEWAY_BENCH_STACK"

// stackConfig is the stack a child process serves: the devstack, with the
// emulator's model of AWS given as its EMULATOR_* settings, and the store.
type stackConfig struct {
	Latency time.Duration  // added to every management call
	Quota   emulator.Quota // the account's throttle; zero: none
	// DynamoDB, when set, is the store's endpoint (and Table its table);
	// otherwise the store is in memory.
	DynamoDB, Table string
	// References serves two more publishers beside the devstack's, over
	// its store, which post with plain net/http and with the SDK client as
	// NewFromConfig makes it (see references.go).
	References bool
	// HistoryTTL is the stack's HISTORY_TTL; empty: the default.
	HistoryTTL string
}

// settings are the devstack's settings for c, on loopback ports, validated
// as `make run` validates them.
func (c stackConfig) settings() (config.Config, error) {
	env := map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"DYNAMODB_ENDPOINT": c.DynamoDB, "TABLE_NAME": c.Table,
		"EMULATOR_LATENCY": c.Latency.String(), "HISTORY_TTL": c.HistoryTTL,
	}
	if c.Quota.Rate > 0 {
		env["EMULATOR_QUOTA"] = strconv.FormatFloat(c.Quota.Rate, 'g', -1, 64)
		env["EMULATOR_QUOTA_BURST"] = strconv.Itoa(c.Quota.Burst)
	}
	return config.Load(func(name string) string { return env[name] })
}

// stackAddrs is what a serving stack reports, as one JSON line on stdout.
type stackAddrs struct {
	WS        string // the WebSocket and management API
	GRPC      string // the publisher's gRPC
	HTTP      string // its REST facade and /metrics
	Control   string // see controlMux
	PlainGRPC string // the reference publishers' gRPC
	NaiveGRPC string
}

// serveChild serves the stack spec asks for until the bench closes this
// process's stdin (or ends: the pipe then closes too).
func serveChild(ctx context.Context, spec string) error {
	var cfg stackConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		return fmt.Errorf("%s: %w", stackEnv, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return serveStack(ctx, cfg, os.Stdout)
}

// serveStack serves the devstack, as `make run` starts it, so that the
// bench measures what ships: the emulated API Gateway calling the real
// handlers, the store, and the publisher, which reaches the emulator
// through its client over HTTP. Beside it: the control server and, if
// asked, the reference publishers. It writes the addresses to ready, then
// serves until ctx ends.
func serveStack(ctx context.Context, cfg stackConfig, ready io.Writer) error {
	settings, err := cfg.settings()
	if err != nil {
		return err
	}
	// Warnings (posts that failed for good) go to stderr, which the bench
	// shows when the stack fails.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stack, err := devstack.New(ctx, settings, log)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return stack.Run(ctx) })
	addrs := stackAddrs{WS: stack.WSAddr, GRPC: stack.GRPCAddr, HTTP: stack.HTTPAddr}

	// serve runs h on a loopback port until ctx ends.
	serve := func(h http.Handler) (string, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			return srv.Close()
		})
		return l.Addr().String(), nil
	}
	// serveReference runs a publisher service beside the stack's, over its
	// store, whose fan-out posts with what newPoster makes.
	serveReference := func(newPoster func(aws.Config, string) fanout.Poster) (string, error) {
		gw, err := assembly.New(ctx, settings, assembly.Options{
			Log: log, Store: stack.Store, LocalCredentials: true,
			ManagementEndpoint: "http://" + stack.WSAddr, NewPoster: newPoster,
		})
		if err != nil {
			return "", err
		}
		srv := gw.Publisher
		if srv.GRPC, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "", err
		}
		if srv.HTTP, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "", errors.Join(err, srv.GRPC.Close())
		}
		g.Go(func() error { return publisher.Run(ctx, srv) })
		return srv.GRPC.Addr().String(), nil
	}

	addrs.Control, err = serve(controlMux())
	if err == nil && cfg.References {
		addrs.PlainGRPC, err = serveReference(func(_ aws.Config, endpoint string) fanout.Poster { return newPlainPoster(endpoint) })
	}
	if err == nil && cfg.References {
		addrs.NaiveGRPC, err = serveReference(func(cfg aws.Config, endpoint string) fanout.Poster { return newNaivePoster(cfg, endpoint) })
	}
	if err == nil {
		err = json.NewEncoder(ready).Encode(addrs)
	}
	if err != nil {
		g.Go(func() error { return err }) // stops the rest
	}
	return g.Wait()
}

// controlMux serves net/http/pprof, to profile the stack while the bench
// runs (the scenarios print its address), and /gc: what a connection costs
// at rest is measured once garbage is collected and freed memory returned
// to the OS.
func controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /gc", func(w http.ResponseWriter, r *http.Request) { debug.FreeOSMemory() })
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}

// child is a stack the bench started: this binary again, in its stack role.
type child struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	stderr bytes.Buffer // read only once the process has exited
}

// startStack starts a child serving cfg and waits for its addresses.
func startStack(cfg stackConfig) (*child, stackAddrs, error) {
	var addrs stackAddrs
	spec, err := json.Marshal(cfg)
	if err != nil {
		return nil, addrs, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, addrs, err
	}
	c := &child{cmd: exec.Command(exe)}
	c.cmd.Env = append(os.Environ(), stackEnv+"="+string(spec))
	c.cmd.Stderr = &c.stderr
	c.cmd.WaitDelay = 5 * time.Second // for the pipes, after the process ends
	stdout, err := c.cmd.StdoutPipe()
	if err == nil {
		c.stdin, err = c.cmd.StdinPipe()
	}
	if err == nil {
		err = c.cmd.Start()
	}
	if err != nil {
		return nil, addrs, fmt.Errorf("start the stack: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &addrs)
	}
	if err != nil {
		return nil, addrs, fmt.Errorf("the stack did not start: %w", errors.Join(err, c.stop()))
	}
	return c, addrs, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop closes the child's stdin, which ends it, and waits; one that does
// not end within 15 s is killed.
func (c *child) stop() error {
	c.stdin.Close()
	kill := time.AfterFunc(15*time.Second, func() { c.cmd.Process.Kill() })
	defer kill.Stop()
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("stack: %w\n%s", err, c.stderr.Bytes())
	}
	return nil
}
