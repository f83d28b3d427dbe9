package store

import (
	"context"
	"errors"
	"time"
)

// errStreamsNotImplemented stands in while the DynamoDB layout of streams
// is written; the memory store has them.
var errStreamsNotImplemented = errors.New("dynamodb store: streams not implemented yet")

func (s *DynamoDB) NextPosition(context.Context, string, time.Duration) (Position, error) {
	return Position{}, errStreamsNotImplemented
}

func (s *DynamoDB) Retain(context.Context, string, Position, Retained, time.Duration) error {
	return errStreamsNotImplemented
}

func (s *DynamoDB) Positions(context.Context, []string, time.Duration) (map[string]Position, error) {
	return nil, errStreamsNotImplemented
}

func (s *DynamoDB) History(context.Context, string, uint64, int) ([]Retained, Position, error) {
	return nil, Position{}, errStreamsNotImplemented
}

func (s *DynamoDB) Reserve(context.Context, string, string) (Outcome, error) {
	return Outcome{}, errStreamsNotImplemented
}

func (s *DynamoDB) Complete(context.Context, string, string, Outcome) error {
	return errStreamsNotImplemented
}

func (s *DynamoDB) Release(context.Context, string, string) error { return errStreamsNotImplemented }
