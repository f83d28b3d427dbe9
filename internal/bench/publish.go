package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
)

// publisherClient publishes through the publisher's gRPC API or its REST
// facade, as a backend would, with the send time in the payload.
type publisherClient struct {
	grpc    wsgatewayv1.PublisherServiceClient
	conn    *grpc.ClientConn
	httpURL string
	http    *http.Client
}

func newPublisherClient(addrs StackAddrs) (*publisherClient, error) {
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &publisherClient{
		grpc:    wsgatewayv1.NewPublisherServiceClient(conn),
		conn:    conn,
		httpURL: "http://" + addrs.HTTP,
		http:    &http.Client{Timeout: time.Minute},
	}, nil
}

func (p *publisherClient) close() { p.conn.Close() }

// published is what one publish returned.
type published struct {
	delivered, gone, failed int
	rpc                     time.Duration // the call, as the backend saw it
}

// publishGRPC publishes to topic a payload stamped with the current time.
func (p *publisherClient) publishGRPC(ctx context.Context, topic string) (published, error) {
	start := time.Now()
	data, err := structpb.NewValue(payload(start))
	if err != nil {
		return published{}, err
	}
	res, err := p.grpc.Publish(ctx, &wsgatewayv1.PublishRequest{Topic: topic, Data: data})
	if err != nil {
		return published{}, fmt.Errorf("publish to %s: %w", topic, err)
	}
	return published{int(res.Delivered), int(res.Gone), int(res.Failed), time.Since(start)}, nil
}

// publishREST is publishGRPC through the REST facade.
func (p *publisherClient) publishREST(ctx context.Context, topic string) (published, error) {
	start := time.Now()
	body, err := json.Marshal(map[string]any{"data": payload(start)})
	if err != nil {
		return published{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.httpURL+"/v1/topics/"+topic+":publish", bytes.NewReader(body))
	if err != nil {
		return published{}, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return published{}, err
	}
	defer resp.Body.Close()
	var res struct{ Delivered, Gone, Failed int }
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return published{}, fmt.Errorf("REST publish to %s: %s: %s", topic, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return published{}, err
	}
	return published{res.Delivered, res.Gone, res.Failed, time.Since(start)}, nil
}

// counters scrapes the publisher's /metrics for the named series (a name
// with its labels, as Prometheus' text format prints it).
func (p *publisherClient) counters(ctx context.Context, series ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.httpURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := make(map[string]bool, len(series))
	for _, s := range series {
		want[s] = true
	}
	got := make(map[string]float64, len(series))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		if got[name], err = strconv.ParseFloat(value, 64); err != nil {
			return nil, fmt.Errorf("/metrics: %s: %w", name, err)
		}
	}
	return got, sc.Err()
}
