// Package lambdaenv is the start-up every wsgateway Lambda shares: -h, a
// JSON logger that tags each line with the invocation's AWS request id,
// settings validated once during the init phase, and wsgateway built from
// them by the assembly every binary shares. It keeps each main to the one
// line that differs, the handler it starts.
package lambdaenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/wsgateway/wsgateway/internal/assembly"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/handler"
)

// Settings are the environment variables the Lambdas read, for -h: the
// listeners, API keys and the devstack's emulator do not concern them.
var Settings = []string{
	"TABLE_NAME", "DYNAMODB_ENDPOINT", "APIGW_ENDPOINT", "AWS_REGION",
	"CONNECT_TOKEN_SECRET", "MAX_SUBSCRIPTIONS_PER_CONNECTION", "CALL_TIMEOUT",
	"HISTORY_TTL", "RECOVERY_MAX_MESSAGES",
}

// ClientPublishSettings are what the publish route's function reads
// besides Settings: its connections' rate. No other function reads them,
// so no other lists them.
var ClientPublishSettings = []string{"CLIENT_PUBLISH_RATE", "CLIENT_PUBLISH_BURST"}

// Load reads and validates the settings, plus whatever requirements the
// function named name adds (e.g. config.Config.RequireAPIGW), and builds
// wsgateway from them. It exits on any problem: a function that fails its
// init phase shows up at once in the deployment's logs, where one that
// failed every invocation would show up as client errors. Run by hand with
// -h, it lists the settings and exits.
func Load(name string, requirements ...func(config.Config) error) *assembly.Gateway {
	return load(name, Settings, requirements)
}

// ClientPublish loads the publish route's function, which posts the
// message to the topic's subscribers (APIGW_ENDPOINT is required) and
// reads the client publish rate too, and returns its handler.
func ClientPublish(name string) *handler.ClientPublish {
	return load(name, slices.Concat(Settings, ClientPublishSettings), []func(config.Config) error{config.Config.RequireAPIGW}).ClientPublish()
}

func load(name string, settings []string, requirements []func(config.Config) error) *assembly.Gateway {
	flags := flag.NewFlagSet(name, flag.ExitOnError)
	flags.Usage = func() { fmt.Fprint(flags.Output(), config.Usage(name, settings...)) }
	flags.Parse(os.Args[1:])

	log := NewLogger(os.Stderr)
	slog.SetDefault(log)

	cfg, err := config.Load(os.Getenv)
	errs := []error{err}
	for _, require := range requirements {
		errs = append(errs, require(cfg))
	}
	if err := errors.Join(errs...); err != nil {
		exit(log, err)
	}
	gw, err := assembly.New(context.Background(), cfg, assembly.Options{
		Log: log,
		// A DynamoDB endpoint means a local emulator, which must not see
		// real credentials.
		LocalCredentials: cfg.DynamoDBEndpoint != "",
	})
	if err != nil {
		exit(log, err)
	}
	return gw
}

// Routes loads the function named name, with its requirements, and
// returns the WebSocket routes, of which it serves one.
func Routes(name string, requirements ...func(config.Config) error) *handler.Routes {
	return Load(name, requirements...).Routes()
}

// exit logs why the function cannot start, one line per problem, and ends
// the init phase.
func exit(log *slog.Logger, err error) {
	// errors.Join puts each problem on a line of its own.
	for _, problem := range strings.Split(err.Error(), "\n") {
		log.Error("cannot start", "err", problem)
	}
	os.Exit(1)
}

// NewLogger returns a JSON logger to w whose lines, when logged with an
// invocation's context, carry its AWS request id (aws_request_id): the id
// in Lambda's own START/END/REPORT lines, so that one invocation's lines can
// be found among a busy function's.
func NewLogger(w io.Writer) *slog.Logger {
	return assembly.Logger(slog.NewJSONHandler(w, nil))
}
