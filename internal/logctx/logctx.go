// Package logctx tags log lines with the ids a call's context carries (a
// publisher call's request id, a Lambda invocation's AWS request id), so
// that the lines one call logs, down to the fan-out's, can be told apart
// from a concurrent call's.
package logctx

import (
	"context"
	"log/slog"
	"slices"
)

// Field is one attribute a context may carry: Key is its name in the log,
// From reads its value ("" when the context carries none).
type Field struct {
	Key  string
	From func(context.Context) string
}

// Handler adds its fields to every record logged with a context that
// carries them.
type Handler struct {
	inner  slog.Handler
	fields []Field
}

// Wrap returns h tagging records with fields. Wrapping a Handler again adds
// only the fields it lacks (by Key), so a logger wrapped by a main and again
// by a library logs each id once.
func Wrap(h slog.Handler, fields ...Field) *Handler {
	if w, ok := h.(*Handler); ok {
		merged := slices.Clone(w.fields)
		for _, f := range fields {
			if !slices.ContainsFunc(merged, func(g Field) bool { return g.Key == f.Key }) {
				merged = append(merged, f)
			}
		}
		return &Handler{inner: w.inner, fields: merged}
	}
	return &Handler{inner: h, fields: slices.Clone(fields)}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	for _, f := range h.fields {
		if v := f.From(ctx); v != "" {
			r.AddAttrs(slog.String(f.Key, v))
		}
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), fields: h.fields}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), fields: h.fields}
}
