// Package lambdaenv is the start-up every wsgateway Lambda shares: -h, a
// JSON logger that tags each line with the invocation's AWS request id,
// settings validated once during the init phase, the AWS SDK configuration
// and the DynamoDB store. It keeps each main to the one line that differs,
// the handler it starts.
package lambdaenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/handler"
	"github.com/wsgateway/wsgateway/internal/store"
)

// Env is what a Lambda's handler is built from.
type Env struct {
	Config config.Config
	AWS    aws.Config
	Log    *slog.Logger
	Store  *store.DynamoDB
}

// Load reads and validates the settings, plus whatever requirements the
// function named name adds (e.g. config.Config.RequireAPIGW), and connects
// the store. It exits on any problem: a function that fails its init phase
// shows up at once in the deployment's logs, where one that failed every
// invocation would show up as client errors. Run by hand with -h, it lists
// the settings and exits.
func Load(name string, requirements ...func(config.Config) error) *Env {
	flags := flag.NewFlagSet(name, flag.ExitOnError)
	flags.Usage = func() { fmt.Fprint(flags.Output(), config.Usage(name)) }
	flags.Parse(os.Args[1:])

	log := NewLogger(os.Stderr)
	slog.SetDefault(log)

	cfg, err := config.Load(os.Getenv)
	errs := []error{err}
	for _, require := range requirements {
		errs = append(errs, require(cfg))
	}
	if err := errors.Join(errs...); err != nil {
		Exit(log, err)
	}
	// A DynamoDB endpoint means a local emulator, which must not see real
	// credentials.
	awsCfg, err := cfg.AWS(context.Background(), cfg.DynamoDBEndpoint != "")
	if err != nil {
		Exit(log, err)
	}
	return &Env{
		Config: cfg,
		AWS:    awsCfg,
		Log:    log,
		Store:  store.NewDynamoDB(store.NewDynamoDBClient(awsCfg, cfg.DynamoDBEndpoint), cfg.TableName),
	}
}

// Routes loads the Env of the WebSocket route's Lambda named name and
// returns its routes.
func Routes(name string) *handler.Routes {
	env := Load(name)
	routes := handler.NewRoutes(env.Store, env.Log)
	routes.Configure(env.Config)
	return routes
}

// Exit logs why the function cannot start, one line per problem, and ends
// the init phase.
func Exit(log *slog.Logger, err error) {
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
	return slog.New(awsRequestIDHandler{slog.NewJSONHandler(w, nil)})
}

type awsRequestIDHandler struct {
	slog.Handler
}

func (h awsRequestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		r.AddAttrs(slog.String("aws_request_id", lc.AwsRequestID))
	}
	return h.Handler.Handle(ctx, r)
}

func (h awsRequestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return awsRequestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h awsRequestIDHandler) WithGroup(name string) slog.Handler {
	return awsRequestIDHandler{h.Handler.WithGroup(name)}
}
