// Command publisher is the PublisherService container: gRPC on GRPC_ADDR,
// the REST facade, health and metrics on HTTP_ADDR, DynamoDB as the store
// and the API Gateway management API at APIGW_ENDPOINT for delivery.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wsgateway/wsgateway/internal/assembly"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/publisher"
)

// settings are the environment variables the publisher reads, for -h: the
// devstack's WS_ADDR and the connect Lambda's token and subscription
// settings do not concern it.
var settings = []string{
	"GRPC_ADDR", "HTTP_ADDR", "TABLE_NAME", "DYNAMODB_ENDPOINT", "APIGW_ENDPOINT",
	"AWS_REGION", "API_KEYS", "CALL_TIMEOUT", "HISTORY_TTL",
}

func main() {
	healthcheck := flag.Bool("healthcheck", false, "probe this container's publisher: exit 0 if /healthz on HTTP_ADDR answers 200")
	flag.Usage = func() { fmt.Fprint(os.Stderr, config.Usage("publisher", settings...)) }
	flag.Parse()
	if *healthcheck {
		// The image's HEALTHCHECK and ECS's health check run this: the
		// distroless image has no shell or curl.
		os.Exit(probe())
	}
	// Every line logged during a call carries its request id.
	log := assembly.Logger(slog.NewJSONHandler(os.Stderr, nil))

	cfg, err := config.Load(os.Getenv)
	if err := errors.Join(err, cfg.RequireAPIGW()); err != nil {
		// errors.Join puts each problem on a line of its own.
		for _, problem := range strings.Split(err.Error(), "\n") {
			log.Error("invalid configuration", "err", problem)
		}
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("publisher stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	gw, err := assembly.New(ctx, cfg, assembly.Options{Log: log})
	if err != nil {
		return err
	}
	srv := gw.Publisher
	if srv.GRPC, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return err
	}
	if srv.HTTP, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return err
	}
	return publisher.Run(ctx, srv)
}

// probe asks the publisher listening on HTTP_ADDR whether it is alive.
func probe() int {
	cfg, _ := config.Load(os.Getenv) // only HTTP_ADDR matters here
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // listening on every interface, loopback included
	}
	client := http.Client{Timeout: 2 * time.Second}
	res, err := client.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: /healthz answered", res.Status)
		return 1
	}
	return 0
}
