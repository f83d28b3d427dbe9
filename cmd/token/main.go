// Command token mints a development connect token: a JWT signed HS256 with
// CONNECT_TOKEN_SECRET that lets a browser connect and subscribe to the
// given topics or prefixes ("orders.*", "*"), and publish to those -publish
// names (none without it).
//
//	CONNECT_TOKEN_SECRET=... go run ./cmd/token -sub alice -ttl 1h -publish 'chat.*' 'orders.*' news
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/config"
)

// settings are the environment variables token reads, for -h.
var settings = []string{"CONNECT_TOKEN_SECRET"}

func main() {
	sub := flag.String("sub", "dev", "the token's subject (who connects)")
	ttl := flag.Duration("ttl", time.Hour, "how long the token is valid")
	publish := flag.String("publish", "", "topics or prefixes* the connection may publish to, separated by commas or spaces; empty: none")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: CONNECT_TOKEN_SECRET=... token [-sub dev] [-ttl 1h] [-publish 'chat.*'] topic-or-prefix* ...")
		flag.PrintDefaults()
		fmt.Fprint(os.Stderr, "\n", config.Usage("token", settings...))
	}
	flag.Parse()
	if err := run(os.Getenv("CONNECT_TOKEN_SECRET"), *sub, *ttl, flag.Args(), splitList(*publish)); err != nil {
		fmt.Fprintln(os.Stderr, "token:", err)
		os.Exit(1)
	}
}

// splitList splits -publish on commas and spaces, which no topic name
// holds, so that one flag (and make's PUBLISH) can name several.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

func run(secret, sub string, ttl time.Duration, topics, publish []string) error {
	// The servers' own check (config.Load): a token signed with a secret
	// they refuse to start with would be refused by every stack.
	if err := config.CheckConnectTokenSecret(secret); err != nil {
		return err
	}
	if len(topics) == 0 {
		return errors.New(`name the topics the token grants, e.g. 'orders.*' news, or '*' for all`)
	}
	tok, err := auth.NewTokens(secret, time.Now).MintGrant(sub, auth.Grant{Topics: topics, Publish: publish}, ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
