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

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	wsgatewayv1 "github.com/wsgateway/wsgateway/gen/go/wsgateway/v1"
	"github.com/wsgateway/wsgateway/internal/fanout"
	"github.com/wsgateway/wsgateway/internal/store"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// Page sizes of ListSubscribers, and how many messages History returns.
const (
	DefaultPageSize     = 100
	MaxPageSize         = 1000
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 1000
)

// Executor delivers messages and disconnects connections;
// *fanout.Fanout is the implementation, the one executor of every RPC
// that posts.
type Executor interface {
	Publish(ctx context.Context, m fanout.Message) (fanout.Result, error)
	SendToUser(ctx context.Context, m fanout.UserMessage) (fanout.Result, error)
	Disconnect(ctx context.Context, d fanout.Disconnect) (int, error)
	Broadcast(ctx context.Context, b fanout.Broadcast) ([]fanout.TopicResult, error)
}

// TopicReader pages through a topic's subscribers, counts them and reads
// its retained messages; both stores implement it.
type TopicReader interface {
	Subscribers(ctx context.Context, topic string, limit int, pageToken string) (store.Page, error)
	CountSubscribers(ctx context.Context, topic string) (connections, users int, err error)
	History(ctx context.Context, topic string, since uint64, limit int) ([]store.Retained, store.Position, error)
}

// Service implements wsgateway.v1.PublisherService.
type Service struct {
	wsgatewayv1.UnimplementedPublisherServiceServer
	exec   Executor
	topics TopicReader
}

// NewService returns the PublisherService backed by exec and topics.
func NewService(exec Executor, topics TopicReader) *Service {
	return &Service{exec: exec, topics: topics}
}

// Publish implements wsgateway.v1.PublisherService.
func (s *Service) Publish(ctx context.Context, req *wsgatewayv1.PublishRequest) (*wsgatewayv1.PublishResponse, error) {
	// An empty idempotency_key is no key: proto3 cannot tell it from an
	// absent one, so REST's "idempotencyKey": "" means the same.
	data, err := messageData(req.GetData())
	if err != nil {
		return nil, toStatus(err)
	}
	m := fanout.Message{Topic: req.GetTopic(), Data: data, Attributes: req.GetAttributes(), IdempotencyKey: req.GetIdempotencyKey()}
	res, err := s.exec.Publish(ctx, m)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wsgatewayv1.PublishResponse{
		MessageId: res.MessageID,
		Delivered: int32(res.Delivered),
		Gone:      int32(res.Gone),
		Failed:    int32(res.Failed),
		Offset:    res.Position.Offset,
		Epoch:     res.Position.Epoch,
		Duplicate: res.Duplicate,
	}, nil
}

// messageData is a request's data as the JSON browsers receive; nil when
// the request has none, which the fan-out refuses by name.
func messageData(v *structpb.Value) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	// Before AsInterface, which would turn NaN into the string "NaN".
	if err := checkValueNumbers("data", v); err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidRequest, err)
	}
	// encoding/json, not protojson: protojson's output varies its
	// whitespace on purpose, and this is what every browser receives.
	data, err := json.Marshal(v.AsInterface())
	if err != nil {
		return nil, fmt.Errorf("%w: data: %v", fanout.ErrInvalid, err)
	}
	return data, nil
}

// SendToUser implements wsgateway.v1.PublisherService.
func (s *Service) SendToUser(ctx context.Context, req *wsgatewayv1.SendToUserRequest) (*wsgatewayv1.SendToUserResponse, error) {
	data, err := messageData(req.GetData())
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := s.exec.SendToUser(ctx, fanout.UserMessage{
		UserID: req.GetUserId(), Data: data, Attributes: req.GetAttributes(), IdempotencyKey: req.GetIdempotencyKey(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &wsgatewayv1.SendToUserResponse{
		MessageId: res.MessageID,
		Delivered: int32(res.Delivered),
		Gone:      int32(res.Gone),
		Failed:    int32(res.Failed),
		Duplicate: res.Duplicate,
	}, nil
}

// Disconnect implements wsgateway.v1.PublisherService.
func (s *Service) Disconnect(ctx context.Context, req *wsgatewayv1.DisconnectRequest) (*wsgatewayv1.DisconnectResponse, error) {
	n, err := s.exec.Disconnect(ctx, fanout.Disconnect{
		ConnectionID: req.GetConnectionId(), UserID: req.GetUserId(), Reason: req.GetReason(), Reconnect: req.GetReconnect(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &wsgatewayv1.DisconnectResponse{Disconnected: int32(n)}, nil
}

// CountSubscribers implements wsgateway.v1.PublisherService. The topic may
// be a pattern ("orders.*"): the count is then of that pattern's own
// subscribers, not of the topics it matches.
func (s *Service) CountSubscribers(ctx context.Context, req *wsgatewayv1.CountSubscribersRequest) (*wsgatewayv1.CountSubscribersResponse, error) {
	if err := wsproto.ValidateTopicOrPattern(req.GetTopic()); err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", errInvalidRequest, err))
	}
	conns, users, err := s.topics.CountSubscribers(ctx, req.GetTopic())
	if err != nil {
		return nil, toStatus(fmt.Errorf("count subscribers of %q: %w", req.GetTopic(), err))
	}
	return &wsgatewayv1.CountSubscribersResponse{Connections: int32(conns), Users: int32(users)}, nil
}

// Broadcast implements wsgateway.v1.PublisherService. A topic whose publish
// failed fails the call with its status, although the other topics' went
// through: a retry with the same idempotency_key delivers only what is
// missing (see fanout.Broadcast).
func (s *Service) Broadcast(ctx context.Context, req *wsgatewayv1.BroadcastRequest) (*wsgatewayv1.BroadcastResponse, error) {
	data, err := messageData(req.GetData())
	if err != nil {
		return nil, toStatus(err)
	}
	results, err := s.exec.Broadcast(ctx, fanout.Broadcast{
		Topics: req.GetTopics(), Data: data, Attributes: req.GetAttributes(), IdempotencyKey: req.GetIdempotencyKey(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &wsgatewayv1.BroadcastResponse{Results: make([]*wsgatewayv1.BroadcastResult, len(results))}
	for i, r := range results {
		resp.Results[i] = &wsgatewayv1.BroadcastResult{
			Topic:     r.Topic,
			MessageId: r.MessageID,
			Offset:    r.Position.Offset,
			Epoch:     r.Position.Epoch,
			Delivered: int32(r.Delivered),
			Gone:      int32(r.Gone),
			Failed:    int32(r.Failed),
			Duplicate: r.Duplicate,
		}
	}
	return resp, nil
}

// ListSubscribers implements wsgateway.v1.PublisherService. The topic may
// be a pattern, listed as CountSubscribers counts it.
func (s *Service) ListSubscribers(ctx context.Context, req *wsgatewayv1.ListSubscribersRequest) (*wsgatewayv1.ListSubscribersResponse, error) {
	if err := wsproto.ValidateTopicOrPattern(req.GetTopic()); err != nil {
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
	page, err := s.topics.Subscribers(ctx, req.GetTopic(), size, req.GetPageToken())
	if err != nil {
		return nil, toStatus(fmt.Errorf("list subscribers of %q: %w", req.GetTopic(), err))
	}
	resp := &wsgatewayv1.ListSubscribersResponse{NextPageToken: page.NextToken}
	for _, sub := range page.Subscriptions {
		resp.Subscribers = append(resp.Subscribers, &wsgatewayv1.Subscriber{
			ConnectionId: sub.ConnectionID,
			SubscribedAt: timestamppb.New(sub.SubscribedAt),
			UserId:       sub.UserID,
		})
	}
	return resp, nil
}

// History implements wsgateway.v1.PublisherService: the retained messages
// of the topic's current epoch after since_offset, oldest first, read back
// from the frames subscribers got.
func (s *Service) History(ctx context.Context, req *wsgatewayv1.HistoryRequest) (*wsgatewayv1.HistoryResponse, error) {
	if err := wsproto.ValidateTopic(req.GetTopic()); err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", errInvalidRequest, err))
	}
	limit := int(req.GetLimit())
	switch {
	case limit < 0:
		return nil, toStatus(fmt.Errorf("%w: limit must not be negative, got %d", errInvalidRequest, limit))
	case limit == 0:
		limit = DefaultHistoryLimit
	case limit > MaxHistoryLimit:
		limit = MaxHistoryLimit
	}
	kept, pos, err := s.topics.History(ctx, req.GetTopic(), req.GetSinceOffset(), limit)
	if err != nil {
		return nil, toStatus(fmt.Errorf("history of %q: %w", req.GetTopic(), err))
	}
	resp := &wsgatewayv1.HistoryResponse{Epoch: pos.Epoch, LatestOffset: pos.Offset}
	for _, r := range kept {
		m, err := historyMessage(r)
		if err != nil {
			// Our own frame that does not read back is our bug: Internal,
			// logged with the detail.
			return nil, toStatus(fmt.Errorf("history of %q, offset %d: %w", req.GetTopic(), r.Offset, err))
		}
		resp.Messages = append(resp.Messages, m)
	}
	return resp, nil
}

// historyMessage reads a retained frame back into the API's terms.
func historyMessage(r store.Retained) (*wsgatewayv1.HistoryMessage, error) {
	m, err := wsproto.DecodeMessage(r.Envelope)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(m.Data, &v); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	data, err := structpb.NewValue(v)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return &wsgatewayv1.HistoryMessage{
		MessageId:   m.ID,
		Offset:      r.Offset,
		Data:        data,
		Attributes:  m.Attributes,
		PublishTime: timestamppb.New(m.PublishTime),
	}, nil
}
