// Package publisher is wsgateway's publishing API at the edge: the gRPC
// PublisherService, its grpc-gateway REST facade, health and graceful stop.
// The work itself is done by a transport-free executor (fanout.Fanout);
// this package converts protos to domain types and domain errors to status
// codes, in one place (status.go).
package publisher

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Page sizes of ListSubscribers.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Executor publishes one message; *fanout.Fanout is the implementation.
type Executor interface {
	Publish(ctx context.Context, m fanout.Message) (fanout.Result, error)
}

// SubscriberLister pages through a topic's subscribers; both stores
// implement it.
type SubscriberLister interface {
	Subscribers(ctx context.Context, topic string, limit int, pageToken string) (store.Page, error)
}

// Service implements wsgateway.v1.PublisherService.
type Service struct {
	wsgatewayv1.UnimplementedPublisherServiceServer
	exec Executor
	subs SubscriberLister
}

// NewService returns the PublisherService backed by exec and subs.
func NewService(exec Executor, subs SubscriberLister) *Service {
	return &Service{exec: exec, subs: subs}
}

// Publish implements wsgateway.v1.PublisherService.
func (s *Service) Publish(ctx context.Context, req *wsgatewayv1.PublishRequest) (*wsgatewayv1.PublishResponse, error) {
	m := fanout.Message{Topic: req.GetTopic(), Attributes: req.GetAttributes()}
	if req.GetData() != nil {
		// Before AsInterface, which would turn NaN into the string "NaN".
		if err := checkValueNumbers("data", req.GetData()); err != nil {
			return nil, toStatus(fmt.Errorf("%w: %w", errInvalidRequest, err))
		}
		// encoding/json, not protojson: protojson's output varies its
		// whitespace on purpose, and this is what every browser receives.
		data, err := json.Marshal(req.GetData().AsInterface())
		if err != nil {
			return nil, toStatus(fmt.Errorf("%w: data: %v", fanout.ErrInvalid, err))
		}
		m.Data = data
	}
	res, err := s.exec.Publish(ctx, m)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wsgatewayv1.PublishResponse{
		MessageId: res.MessageID,
		Delivered: int32(res.Delivered),
		Gone:      int32(res.Gone),
		Failed:    int32(res.Failed),
	}, nil
}

// ListSubscribers implements wsgateway.v1.PublisherService.
func (s *Service) ListSubscribers(ctx context.Context, req *wsgatewayv1.ListSubscribersRequest) (*wsgatewayv1.ListSubscribersResponse, error) {
	if err := wsproto.ValidateTopic(req.GetTopic()); err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", errInvalidRequest, err))
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, toStatus(fmt.Errorf("%w: page_size must not be negative, got %d", errInvalidRequest, size))
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	page, err := s.subs.Subscribers(ctx, req.GetTopic(), size, req.GetPageToken())
	if err != nil {
		return nil, toStatus(fmt.Errorf("list subscribers of %q: %w", req.GetTopic(), err))
	}
	resp := &wsgatewayv1.ListSubscribersResponse{NextPageToken: page.NextToken}
	for _, sub := range page.Subscriptions {
		resp.Subscribers = append(resp.Subscribers, &wsgatewayv1.Subscriber{
			ConnectionId: sub.ConnectionID,
			SubscribedAt: timestamppb.New(sub.SubscribedAt),
		})
	}
	return resp, nil
}
