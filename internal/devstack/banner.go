package devstack

import (
	"fmt"
	"strings"

	"github.com/wsgateway/wsgateway/internal/config"
)

// Banner is what the devstack prints on start: where everything is and
// commands to paste into other terminals. With auth on, the commands carry
// the connect token or API key they need, read from the environment of the
// terminal they are pasted in: the banner never prints a secret.
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

`, s.WSAddr, s.GRPCAddr, s.HTTPAddr, storeName)
	if e := cfg.Emulator; e != (config.Emulator{}) {
		// Said up front: a slow or failing stack is otherwise a mystery.
		fmt.Fprintf(&b, "  Emulated AWS     latency %v, quota %g calls/s (burst %d; 0: none), faults: %g throttled, %g server errors, %g lost $disconnect (seed %d)\n\n",
			e.Latency, e.Quota, e.QuotaBurst, e.Throttle, e.ServerError, e.LoseDisconnect, e.Seed)
	}

	tokenAuth, keyAuth := cfg.ConnectTokenSecret != "", len(cfg.APIKeys) > 0
	if tokenAuth || keyAuth {
		b.WriteString("Auth is on. In each new terminal, from the repository root, first set what this one has:\n")
		if tokenAuth {
			b.WriteString("  export CONNECT_TOKEN_SECRET='<the same secret>'   # connect tokens are signed with it\n")
		}
		if keyAuth {
			b.WriteString("  export API_KEY='<one of API_KEYS>'               # publishers send it as a Bearer token\n")
		}
		b.WriteString("\n")
	}

	if tokenAuth {
		fmt.Fprintf(&b, "Open the demo page with a connect token (make -s token prints one):\n  http://%s/?token=<token>\n", s.HTTPAddr)
	} else {
		fmt.Fprintf(&b, "Open the demo page: http://%s/\n", s.HTTPAddr)
	}
	if keyAuth {
		b.WriteString("  and paste the API key into its API key field to publish from it.\n")
	}

	b.WriteString("\nOr subscribe to topic \"demo\" from a second terminal:\n")
	if tokenAuth {
		fmt.Fprintf(&b, "  go run ./cmd/wslisten -url ws://%s/ -token \"$(make -s token TOPICS=demo)\" demo\n", s.WSAddr)
	} else {
		fmt.Fprintf(&b, "  go run ./cmd/wslisten -url ws://%s/ demo\n", s.WSAddr)
	}

	b.WriteString("\nPublish to it (third terminal):\n")
	header := ""
	if keyAuth {
		header = ` -H "Authorization: Bearer $API_KEY"`
	}
	fmt.Fprintf(&b, "  curl -sS -X POST http://%s/v1/topics/demo:publish%s -d '{\"data\":{\"hello\":\"world\"}}'\n\n", s.HTTPAddr, header)
	return b.String()
}
