package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// seed is the seed's publish, kept outside the product's code path to
// compare against: read every connection, then PostToConnection to one
// after another with an SDK client as NewFromConfig makes it.
//
// In memory, listing connections costs nothing whichever way it is done,
// so the benchmark lists the topic's subscribers through the publisher's
// API; what the seed's Scan costs on DynamoDB is measured apart
// (runLookup).
type seed struct {
	api  *apigatewaymanagementapi.Client
	list wsgatewayv1.PublisherServiceClient
}

func newSeed(cfg aws.Config, endpoint string, list wsgatewayv1.PublisherServiceClient) *seed {
	return &seed{
		api: apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
			o.BaseEndpoint = aws.String(endpoint)
		}),
		list: list,
	}
}

// publish posts a payload stamped with the current time to every
// subscriber of topic, one after another.
func (s *seed) publish(ctx context.Context, topic string) (published, error) {
	start := time.Now()
	ids, err := s.connections(ctx, topic)
	if err != nil {
		return published{}, err
	}
	data, err := json.Marshal(payload(start))
	if err != nil {
		return published{}, err
	}
	envelope, err := wsproto.EncodeMessage(wsproto.Message{Topic: topic, ID: fmt.Sprint("seed-", start.UnixNano()), Data: data, PublishTime: start})
	if err != nil {
		return published{}, err
	}
	var res published
	for _, id := range ids {
		_, err := s.api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: aws.String(id),
			Data:         envelope,
		})
		if err != nil {
			res.failed++
			continue
		}
		res.delivered++
	}
	res.rpc = time.Since(start)
	return res, ctx.Err()
}

func (s *seed) connections(ctx context.Context, topic string) ([]string, error) {
	var ids []string
	token := ""
	for {
		page, err := s.list.ListSubscribers(ctx, &wsgatewayv1.ListSubscribersRequest{Topic: topic, PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list subscribers of %s: %w", topic, err)
		}
		for _, sub := range page.Subscribers {
			ids = append(ids, sub.ConnectionId)
		}
		if token = page.NextPageToken; token == "" {
			return ids, nil
		}
	}
}
