package main

import (
	"context"
	"fmt"
	"time"

	smithytime "github.com/aws/smithy-go/time"
)

// runMemory is the emulated API Gateway's resident memory (RSS, as Linux
// counts it) per idle subscribed WebSocket, right after the connections
// opened and once the runtime has collected the handshakes' garbage. The
// store is DynamoDB (dynalite, another process), so that the RSS is the
// gateway's alone.
func runMemory(ctx context.Context, cfg options) ([]row, error) {
	endpoint, stopDB, err := startDynalite()
	if err != nil {
		return nil, err
	}
	defer stopDB()
	stack, addrs, err := startStack(stackConfig{DynamoDB: endpoint, Table: "wsgateway-memory"})
	if err != nil {
		return nil, err
	}
	defer stack.stop()
	// measure reads the stack's RSS, after collecting its garbage if gc.
	measure := func(gc bool) (int64, error) {
		if gc {
			if err := collectGarbage(addrs.Control); err != nil {
				return 0, err
			}
		}
		return rss(stack.pid())
	}
	before, err := measure(true)
	if err != nil {
		return nil, err
	}
	subs, err := connect(ctx, "ws://"+addrs.WS+"/", cfg.idleConns, func(int) []string { return []string{"memory"} })
	if err != nil {
		return nil, err
	}
	defer subs.close()
	if err := smithytime.SleepWithContext(ctx, time.Second); err != nil {
		return nil, err
	}
	opened, err := measure(false)
	if err != nil {
		return nil, err
	}
	idle, err := measure(true)
	if err != nil {
		return nil, err
	}
	kib := func(rss int64) float64 { return float64(rss-before) / float64(cfg.idleConns) / 1024 }
	progress("memory: the emulator grew %.1f KiB per connection (%.1f KiB once collected)", kib(opened), kib(idle))
	return []row{{"memory", fmt.Sprintf("emulator RSS, %d idle WebSockets", cfg.idleConns),
		fmt.Sprintf("%.1f KiB per connection", kib(idle)),
		fmt.Sprintf("%.1f KiB before garbage collection", kib(opened)), "≤ 16 KiB"}}, nil
}
