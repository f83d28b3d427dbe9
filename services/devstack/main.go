// Command devstack runs the whole of wsgateway locally in one process: an
// emulated API Gateway WebSocket API, the Lambda handlers, the publisher
// service and a store. `make run` starts it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/devstack"
)

// settings lists every variable: the devstack runs every part of the
// system, so each one applies to it.
func settings() []string {
	var names []string
	for _, s := range config.Settings {
		names = append(names, s.Name)
	}
	return names
}

func main() {
	flag.Usage = func() { fmt.Fprint(os.Stderr, config.Usage("devstack", settings()...)) }
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	stack, err := devstack.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Print(devstack.Banner(stack, cfg))
	return stack.Run(ctx)
}
