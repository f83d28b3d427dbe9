// Command token mints a development connect token: a JWT signed HS256 with
// CONNECT_TOKEN_SECRET that lets a browser connect and subscribe to the
// given topics or prefixes ("orders.*", "*").
//
//	CONNECT_TOKEN_SECRET=... go run ./cmd/token -sub alice -ttl 1h 'orders.*' news
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/config"
)

// settings are the environment variables token reads, for -h.
var settings = []string{"CONNECT_TOKEN_SECRET"}

func main() {
	sub := flag.String("sub", "dev", "the token's subject (who connects)")
	ttl := flag.Duration("ttl", time.Hour, "how long the token is valid")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: CONNECT_TOKEN_SECRET=... token [-sub dev] [-ttl 1h] topic-or-prefix* ...")
		flag.PrintDefaults()
		fmt.Fprint(os.Stderr, "\n", config.Usage("token", settings...))
	}
	flag.Parse()
	if err := run(os.Getenv("CONNECT_TOKEN_SECRET"), *sub, *ttl, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "token:", err)
		os.Exit(1)
	}
}

func run(secret, sub string, ttl time.Duration, topics []string) error {
	// The servers' own check (config.Load): a token signed with a secret
	// they refuse to start with would be refused by every stack.
	if err := config.CheckConnectTokenSecret(secret); err != nil {
		return err
	}
	if len(topics) == 0 {
		return errors.New(`name the topics the token grants, e.g. 'orders.*' news, or '*' for all`)
	}
	tok, err := auth.NewTokens(secret, time.Now).Mint(sub, topics, ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
