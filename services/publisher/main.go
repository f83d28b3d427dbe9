// Command publisher is the PublisherService container: gRPC on GRPC_ADDR,
// the REST facade and health on HTTP_ADDR, DynamoDB as the store and the
// API Gateway management API at APIGW_ENDPOINT for delivery.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/publisher"
	"github.com/wsgateway/wsgateway/internal/store"
)

func main() {
	flag.Usage = func() { fmt.Fprint(os.Stderr, config.Usage("publisher")) }
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil {
		log.Error("publisher stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := config.Load(os.Getenv)
	if err == nil {
		err = cfg.RequireAPIGW()
	}
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	awsCfg, err := cfg.AWS(ctx, false)
	if err != nil {
		return err
	}
	st := store.NewDynamoDB(store.NewDynamoDBClient(awsCfg, cfg.DynamoDBEndpoint), cfg.TableName)
	fan := fanout.New(st, apigw.New(awsCfg, cfg.APIGWEndpoint), fanout.Options{Logger: log})

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return err
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	return publisher.Run(ctx, publisher.Config{
		GRPC:    grpcLis,
		HTTP:    httpLis,
		Service: publisher.NewService(fan, st),
		Ready:   st.Ping,
		Log:     log,
	})
}
