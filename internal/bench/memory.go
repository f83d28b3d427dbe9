package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// MemoryResult is scenario 6: resident memory (RSS, as Linux counts it) of
// the emulated API Gateway per idle WebSocket, and of the publisher
// binary during a fan-out. The two run as separate processes, on one
// DynamoDB (dynalite), as on AWS.
type MemoryResult struct {
	Connections int `json:"connections"`
	// The emulator's growth per connection, right after the connections
	// opened and once garbage is collected.
	PerConnection     float64 `json:"per_connection_bytes"`
	PerConnectionIdle float64 `json:"per_connection_idle_bytes"`
	// The publisher at rest, and its peak during a publish to all the
	// connections.
	PublisherIdle int64 `json:"publisher_idle_bytes"`
	PublisherPeak int64 `json:"publisher_peak_bytes"`
	Delivered     int   `json:"delivered"`
}

const memoryTopic = "memory"

// runMemory is scenario 6.
func runMemory(ctx context.Context, cfg Config) (MemoryResult, error) {
	r := MemoryResult{Connections: cfg.IdleConnections}
	db, endpoint, err := startDynalite()
	if err != nil {
		return r, err
	}
	defer db.stop()
	gw, addrs, err := startStackProc(cfg.exe, StackConfig{DynamoDB: endpoint, Table: "wsgateway-memory", PProf: true})
	if err != nil {
		return r, err
	}
	defer gw.stop()
	pid := gw.cmd.Process.Pid
	if err := collect(addrs.PProf); err != nil {
		return r, err
	}
	before, _, err := procRSS(pid)
	if err != nil {
		return r, err
	}
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", cfg.IdleConnections, func(int) []string { return []string{memoryTopic} })
	if err != nil {
		return r, err
	}
	defer subs.close()
	if err := waitCtx(ctx, time.Second); err != nil {
		return r, err
	}
	after, _, err := procRSS(pid)
	if err != nil {
		return r, err
	}
	if err := collect(addrs.PProf); err != nil {
		return r, err
	}
	idle, _, err := procRSS(pid)
	if err != nil {
		return r, err
	}
	if err := saveHeapProfile(addrs.PProf, cfg.Profiles, "gateway-heap-idle"); err != nil {
		return r, err
	}
	n := float64(cfg.IdleConnections)
	r.PerConnection, r.PerConnectionIdle = float64(after-before)/n, float64(idle-before)/n
	cfg.progress("memory: the emulator grew %.1f KiB per connection (%.1f KiB once collected)", r.PerConnection/1024, r.PerConnectionIdle/1024)

	bin, err := os.MkdirTemp("", "wsgateway-bench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(bin)
	pub, grpcAddr, err := startPublisher(ctx, bin, endpoint, "wsgateway-memory", "http://"+addrs.WS)
	if err != nil {
		return r, err
	}
	defer pub.stop()
	pc, err := newPublisherClient(StackAddrs{GRPC: grpcAddr})
	if err != nil {
		return r, err
	}
	defer pc.close()
	if r.PublisherIdle, _, err = pub.rss(); err != nil {
		return r, err
	}
	if err := resetPeak(pub.cmd.Process.Pid); err != nil {
		return r, fmt.Errorf("reset the publisher's peak RSS: %w", err)
	}
	want := subs.received.Load()
	res, err := pc.publishGRPC(ctx, memoryTopic)
	if err != nil {
		return r, err
	}
	if !subs.waitReceived(ctx, want+int64(res.delivered), time.Minute) {
		return r, fmt.Errorf("the publish reached %d subscribers but not all received it", res.delivered)
	}
	r.Delivered = res.delivered
	if _, r.PublisherPeak, err = pub.rss(); err != nil {
		return r, err
	}
	cfg.progress("memory: the publisher uses %.1f MiB at rest, %.1f MiB at its peak fanning out to %d", float64(r.PublisherIdle)/(1<<20), float64(r.PublisherPeak)/(1<<20), res.delivered)
	return r, nil
}

// saveHeapProfile saves a stack's heap profile as dir/name.pprof, if dir
// is set.
func saveHeapProfile(pprofAddr, dir, name string) error {
	if dir == "" {
		return nil
	}
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".pprof"), b, 0o644)
}

// collect asks a stack to collect its garbage and return what it freed.
func collect(pprofAddr string) error {
	resp, err := http.Post("http://"+pprofAddr+"/gc", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// startPublisher builds services/publisher, the container's binary, into
// dir and runs it against the given DynamoDB and management API, as on AWS.
func startPublisher(ctx context.Context, dir, dynamoDB, table, apigwEndpoint string) (*proc, string, error) {
	mod, err := findUp("go.mod")
	if err != nil {
		return nil, "", fmt.Errorf("scenario 6 builds the publisher from the repository: %w", err)
	}
	bin := filepath.Join(dir, "publisher")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./services/publisher")
	build.Dir = filepath.Dir(mod)
	if out, err := build.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("go build ./services/publisher: %w\n%s", err, out)
	}
	addrs, err := freeAddrs(2)
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(bin, nil, []string{
		"GRPC_ADDR=" + addrs[0], "HTTP_ADDR=" + addrs[1],
		"TABLE_NAME=" + table, "DYNAMODB_ENDPOINT=" + dynamoDB, "APIGW_ENDPOINT=" + apigwEndpoint,
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local", "AWS_EC2_METADATA_DISABLED=true",
	}, nil)
	if err != nil {
		return nil, "", err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + addrs[1] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, addrs[0], nil
			}
		}
		if time.Now().After(deadline) {
			return nil, "", errors.Join(fmt.Errorf("the publisher was not ready within 30s: %v", err), p.stop())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddrs returns n loopback addresses free at the time of the call.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)))
	}
	return addrs, nil
}
