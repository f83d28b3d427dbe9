package devstack

import (
	"fmt"
	"strings"

	"github.com/wsgateway/wsgateway/internal/config"
)

// Banner is what the devstack prints on start: where everything is and two
// commands to paste into other terminals.
func Banner(s *Stack, cfg config.Config) string {
	storeName := "in-memory (set DYNAMODB_ENDPOINT for DynamoDB)"
	if cfg.DynamoDBEndpoint != "" {
		storeName = fmt.Sprintf("DynamoDB table %s at %s", cfg.TableName, cfg.DynamoDBEndpoint)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `
wsgateway devstack is up.

  WebSocket API    ws://%[1]s/
  Management API   http://%[1]s/@connections/{connectionId}
  gRPC             %[2]s   (wsgateway.v1.PublisherService, reflection, grpc.health.v1)
  HTTP             http://%[3]s   (REST /v1/..., /healthz, /readyz, /metrics)
  Store            %[4]s

Open the demo page: http://%[3]s/

Or subscribe to topic "demo" from a second terminal:
  go run ./services/wslisten -url ws://%[1]s/ demo

Publish to it (third terminal):
  curl -sS -X POST http://%[3]s/v1/topics/demo:publish -d '{"data":{"hello":"world"}}'

`, s.WSAddr, s.GRPCAddr, s.HTTPAddr, storeName)
	return b.String()
}
