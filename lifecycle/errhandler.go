package lifecycle

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// ErrorHandler is the design document's DefaultErrorHandler: modules pass
// every error they return through Handle, which counts InfraErrors in
// infra_errors_total{type,component} and returns the error unchanged. Other
// errors (a cache miss, a caller's cancelled ctx) are the caller's business
// and are not counted. It does not log: the module that returns the error
// decides whether it is worth a line.
type ErrorHandler struct {
	counter metric.Int64Counter
}

// NewErrorHandler counts through mp; a nil mp counts nothing.
func NewErrorHandler(mp metric.MeterProvider) *ErrorHandler {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	c, err := mp.Meter("github.com/gochat/im-infra/lifecycle").Int64Counter("infra.errors",
		metric.WithUnit("{error}"),
		metric.WithDescription("Infrastructure errors returned by im-infra modules, by type and component."))
	if err != nil {
		c, _ = noop.NewMeterProvider().Meter("").Int64Counter("infra.errors")
	}
	return &ErrorHandler{counter: c}
}

// Handle counts err if it is (or wraps) an *InfraError and returns it.
// A nil handler or a nil error is fine.
func (h *ErrorHandler) Handle(ctx context.Context, err error) error {
	if h == nil || err == nil {
		return err
	}
	var ie *InfraError
	if errors.As(err, &ie) {
		h.counter.Add(ctx, 1, metric.WithAttributes(
			attribute.String("type", string(ie.Type)),
			attribute.String("component", ie.Component)))
	}
	return err
}
