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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/emulator"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/handler"
	"github.com/wsgateway/wsgateway/internal/metrics"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// stackEnv, in the environment of a process the bench started, holds the
// stackConfig (JSON) of the stack that process is to serve.
const stackEnv = "WSGATEWAY_BENCH_STACK"

// stackConfig is the stack a child process serves: the emulator's model of
// AWS, the store, and the publishers in it.
type stackConfig struct {
	Latency time.Duration  // added to every management call
	Quota   emulator.Quota // the account's throttle; zero: none
	// DynamoDB, when set, is the store's endpoint (and Table its table);
	// otherwise the store is in memory.
	DynamoDB, Table string
	// Publisher serves the publisher service, wired as services/publisher
	// wires it; References two more, which post with plain net/http and
	// with the SDK client as NewFromConfig makes it (see references.go).
	Publisher, References bool
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

// serveStack is the devstack's wiring on loopback ports: the emulated API
// Gateway calling the real handlers, the store, and the publishers, which
// reach the emulator through their clients over HTTP. It writes its
// addresses to ready, then serves until ctx ends.
func serveStack(ctx context.Context, cfg stackConfig, ready io.Writer) error {
	awsCfg, err := config.Config{Region: "us-east-1"}.AWS(ctx, true)
	if err != nil {
		return err
	}
	// Warnings (posts that failed for good) go to stderr, which the bench
	// shows when the stack fails.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var st store.Store = store.NewMemory()
	if cfg.DynamoDB != "" {
		client := store.NewDynamoDBClient(awsCfg, cfg.DynamoDB)
		if err := store.EnsureTable(ctx, client, cfg.Table); err != nil {
			return err
		}
		st = store.NewDynamoDB(client, cfg.Table)
	}
	routes := handler.NewRoutes(st, log)
	emu := emulator.New(emulator.Config{
		Routes: map[string]emulator.Handler{
			emulator.RouteConnect:     routes.Connect,
			emulator.RouteDisconnect:  routes.Disconnect,
			emulator.RouteDefault:     routes.Default,
			wsproto.ActionSubscribe:   routes.Subscribe,
			wsproto.ActionUnsubscribe: routes.Unsubscribe,
		},
		MockRoutes:        map[string]string{wsproto.ActionPing: string(wsproto.PongFrame())},
		ManagementLatency: cfg.Latency,
		Quota:             cfg.Quota,
		Logger:            log,
	})
	defer emu.Close()

	g, ctx := errgroup.WithContext(ctx)
	var addrs stackAddrs
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
			// The bench measures nothing any more: no request needs to
			// finish. (Shutdown would wait 5 s for connections a client
			// opened but never used.)
			emu.Close() // ends the WebSockets, which Close does not
			return srv.Close()
		})
		return l.Addr().String(), nil
	}
	// servePublisher runs a publisher service whose fan-out posts with p,
	// exactly as services/publisher wires it, metrics included.
	servePublisher := func(p fanout.Poster) (grpcAddr, httpAddr string, err error) {
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", errors.Join(err, gl.Close())
		}
		m := metrics.New(prometheus.NewRegistry())
		fan := fanout.New(st, m.WrapPoster(p), fanout.Options{Logger: log, Observer: m})
		g.Go(func() error {
			return publisher.Run(ctx, publisher.Config{GRPC: gl, HTTP: hl, Service: publisher.NewService(fan, st), Ready: st.Ping, Metrics: m, Log: log})
		})
		return gl.Addr().String(), hl.Addr().String(), nil
	}

	addrs.WS, err = serve(emu)
	endpoint := "http://" + addrs.WS
	if err == nil {
		addrs.Control, err = serve(controlMux())
	}
	if err == nil && cfg.Publisher {
		addrs.GRPC, addrs.HTTP, err = servePublisher(apigw.New(awsCfg, endpoint))
	}
	if err == nil && cfg.References {
		addrs.PlainGRPC, _, err = servePublisher(newPlainPoster(endpoint))
	}
	if err == nil && cfg.References {
		addrs.NaiveGRPC, _, err = servePublisher(newNaivePoster(awsCfg, endpoint))
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
