package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
)

// publisherClient publishes through a publisher's gRPC API, as a backend
// would, with the send time in the payload.
type publisherClient struct {
	api     wsgatewayv1.PublisherServiceClient
	conn    *grpc.ClientConn
	httpURL string // its REST facade, for /metrics
}

func newPublisherClient(grpcAddr, httpAddr string) (*publisherClient, error) {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &publisherClient{api: wsgatewayv1.NewPublisherServiceClient(conn), conn: conn, httpURL: "http://" + httpAddr}, nil
}

func (p *publisherClient) close() { p.conn.Close() }

// published is what one publish answered, and how long its call took.
type published struct {
	delivered int
	rpc       time.Duration
}

func (p *publisherClient) publish(ctx context.Context, topic string) (published, error) {
	start := time.Now()
	data, err := structpb.NewValue(payload(start))
	if err != nil {
		return published{}, err
	}
	res, err := p.api.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: topic, Data: data})
	if err != nil {
		return published{}, fmt.Errorf("publish to %s: %w", topic, err)
	}
	return published{int(res.Delivered), time.Since(start)}, nil
}

// managementCalls reads the publisher's /metrics: its management calls so
// far, by outcome (ok, throttled, …).
func (p *publisherClient) managementCalls(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.httpURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("/metrics: %w", err)
	}
	calls := map[string]float64{}
	for _, m := range families["wsgateway_management_call_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" {
				calls[l.GetValue()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return calls, nil
}

// cpuUse is the CPU time (user and system) a stack's process and this one,
// the subscribers', have used so far.
type cpuUse struct{ stack, self time.Duration }

func readCPU(stackPID int) (u cpuUse, err error) {
	for pid, to := range map[int]*time.Duration{stackPID: &u.stack, os.Getpid(): &u.self} {
		var st procfs.ProcStat
		p, perr := procfs.NewProc(pid)
		if perr == nil {
			st, perr = p.Stat()
		}
		*to, err = time.Duration(st.CPUTime()*float64(time.Second)), errors.Join(err, perr)
	}
	return u, err
}

func (u cpuUse) since(start cpuUse) cpuUse { return cpuUse{u.stack - start.stack, u.self - start.self} }

// rss is the process's resident set, in bytes.
func rss(pid int) (int64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("RSS needs Linux's /proc: %w", err)
	}
	st, err := p.NewStatus()
	return int64(st.VmRSS), err
}

// collectGarbage asks a stack (see controlMux) to collect its garbage and
// return what it freed to the OS.
func collectGarbage(controlAddr string) error {
	resp, err := http.Post("http://"+controlAddr+"/gc", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/gc: %s", resp.Status)
	}
	return nil
}
