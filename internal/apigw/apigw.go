// Package apigw posts to WebSocket connections through API Gateway's
// management API (@connections) with the real aws-sdk-go-v2 client, and turns
// its typed errors into the sentinels the fan-out branches on.
package apigw

import "errors"

// Outcomes of a management call other than success.
var (
	ErrGone      = errors.New("connection gone")             // 410 GoneException
	ErrThrottled = errors.New("throttled")                   // 429 LimitExceededException: rate limit or the client's buffer is full
	ErrTooLarge  = errors.New("payload too large")           // 413 PayloadTooLargeException
	ErrForbidden = errors.New("forbidden")                   // 403 ForbiddenException: credentials or IAM
	ErrServer    = errors.New("management API server error") // 5xx
)
