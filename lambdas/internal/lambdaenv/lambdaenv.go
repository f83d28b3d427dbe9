// Package lambdaenv is the start-up every wsgateway Lambda shares: a JSON
// logger, settings validated once during the init phase, the AWS SDK
// configuration and the DynamoDB store. It keeps each main to the one line
// that differs, the handler it starts.
package lambdaenv

import (
	"context"
	"errors"
	"log/slog"
	"os"

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
// function adds (e.g. config.Config.RequireAPIGW), and connects the store.
// It exits on any problem: a function that fails its init phase shows up
// at once in the deployment's logs, where one that failed every invocation
// would show up as client errors.
func Load(requirements ...func(config.Config) error) *Env {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
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

// Routes loads the Env of a WebSocket route's Lambda and returns its routes.
func Routes() *handler.Routes {
	env := Load()
	return handler.NewRoutes(env.Store, env.Log)
}

// Exit logs why the function cannot start and ends the init phase.
func Exit(log *slog.Logger, err error) {
	log.Error("cannot start", "err", err)
	os.Exit(1)
}
