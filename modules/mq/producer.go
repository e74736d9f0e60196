package mq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gochat/im-infra/lifecycle"
)

// Header is a record header (franz-go's type, so no copy is made).
type Header = kgo.RecordHeader

// Message is a record to send or a record received by a Handler. It is
// franz-go's kgo.Record, so nothing is copied on the way in or out: the
// fields that matter are Topic (required to send), Key (picks the
// partition: one key stays in order), Value, Headers and Timestamp
// (defaults to the time of Send); Partition and Offset are set on
// received records and on sent ones once acknowledged. While a Send is in
// flight the record belongs to the producer: do not change or resend it
// before its callback ran. A Context the caller set is kept; otherwise
// Send may use the field while the record is in flight, and the callback
// sees it nil or set to the send ctx.
type Message = kgo.Record

// HeaderValue returns the value of m's first header called key, and
// whether there is one.
func HeaderValue(m *Message, key string) ([]byte, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// recordSize is what counts against producer.maxRecordBytes.
func recordSize(m *Message) int {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Send queues m for sending and returns at once; done (which may be nil)
// is called with m and nil once the brokers have it, or with the error
// that made it fail. done is called from the producer's callback
// goroutine, one call at a time: it must not block (to send from it,
// start a goroutine).
//
// Send blocks only while producer.maxBufferedRecords records are waiting,
// until there is room or ctx ends. A bad message (no topic, an illegal
// topic name, too large) fails at once with a VALIDATION
// *lifecycle.InfraError. Cancelling ctx fails m if it has not been sent
// yet; once a request carrying it is in flight, an idempotent producer
// waits for the answer instead, since failing it could reorder records.
func (c *Client) Send(ctx context.Context, m *Message, done func(*Message, error)) {
	if err := c.checkMessage(m); err != nil {
		c.refuse(ctx, m, done, err)
		return
	}
	kcl := c.prod.Load() // the running producer; producerClient says why there is none
	if kcl == nil {
		var err error
		if kcl, err = c.producerClient(); err != nil {
			c.refuse(ctx, m, done, lifecycle.WrapError(lifecycle.TypeInternal, ModuleName, "send", err, fmt.Sprintf("topic %q: record not sent", m.Topic)))
			return
		}
	}
	// Capped so that a trace header is appended to a copy: callers often
	// share one header slice between messages.
	m.Headers = m.Headers[:len(m.Headers):len(m.Headers)]
	traced := c.tracer != nil
	if !traced && ctx != nil {
		traced = inject(ctx, m)
	}
	switch {
	case done == nil:
		kcl.Produce(ctx, m, c.countPromise)
	case !traced && m.Context == nil:
		m.Context = callbackContext(done)
		kcl.Produce(ctx, m, c.callbackPromise)
	default:
		// The record's Context is the caller's, or carries the span
		// (kotel's, or the one in ctx for the metrics and the error
		// handler): done gets a promise of its own.
		kcl.Produce(ctx, m, func(r *kgo.Record, err error) { done(r, c.delivered(r.Context, r, err)) })
	}
}

// callbackContext is the callback of a record sent without a Context of
// its own: Send puts it in the record's Context field while franz-go
// holds the record, so that one shared promise (callbackPromise) serves
// every such Send and none allocates. franz-go only watches that field
// for cancellation, and as a context it is context.Background: never
// done, no deadline, no values. The caller's ctx still goes to Produce
// and can cancel the record.
type callbackContext func(*Message, error)

func (callbackContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (callbackContext) Done() <-chan struct{}       { return nil }
func (callbackContext) Err() error                  { return nil }
func (callbackContext) Value(any) any               { return nil }

// newPromises makes the two promises Send shares between records:
// callbackPromise finds the callback in the record (see callbackContext)
// and gives the record back its nil Context; countPromise is for records
// sent without a callback.
func (c *Client) newPromises() {
	c.callbackPromise = func(r *kgo.Record, err error) {
		done := r.Context.(callbackContext)
		r.Context = nil
		done(r, c.delivered(context.Background(), r, err))
	}
	c.countPromise = func(r *kgo.Record, err error) { _ = c.delivered(r.Context, r, err) }
}

// delivered counts one record's outcome and returns what its callback
// gets: nil, or franz-go's error as the module's (see sendError). ctx is
// the one the record was sent with, or Background when it carried nothing
// the metrics and the error handler could use (no span). It is inlined,
// so that a delivered record costs one check without a MeterProvider.
func (c *Client) delivered(ctx context.Context, r *kgo.Record, err error) error {
	if err == nil && !c.metrics.enabled {
		return nil
	}
	return c.outcome(ctx, r, err)
}

func (c *Client) outcome(ctx context.Context, r *kgo.Record, err error) error {
	if err != nil {
		c.metrics.produceFailed(ctx, r.Topic)
		return c.report(ctx, sendError(r.Topic, err))
	}
	c.metrics.produced(ctx, r.Topic)
	return nil
}

// refuse fails m before it reaches franz-go.
func (c *Client) refuse(ctx context.Context, m *Message, done func(*Message, error), err error) {
	c.metrics.produceFailed(ctx, topicOf(m))
	err = c.report(ctx, err)
	if done != nil {
		done(m, err)
	}
}

func topicOf(m *Message) string {
	if m == nil {
		return ""
	}
	return m.Topic
}

// SendSync sends m and waits until the brokers have it or it failed; see
// Send for the errors.
func (c *Client) SendSync(ctx context.Context, m *Message) error {
	result := make(chan error, 1)
	c.Send(ctx, m, func(_ *Message, err error) { result <- err })
	return <-result
}

// Flush waits until every record sent so far has been delivered or has
// failed, or until ctx ends.
func (c *Client) Flush(ctx context.Context) error {
	kcl, err := c.producerClient()
	if err != nil {
		return err
	}
	if err := kcl.Flush(ctx); err != nil {
		return lifecycle.TimeoutError(ModuleName, "flush", err)
	}
	return nil
}

func (c *Client) checkMessage(m *Message) error {
	if m == nil {
		return lifecycle.ValidationError(ModuleName, "message", "nil message")
	}
	// Most producers send to one topic: remember the last name that passed.
	if last := c.goodTopic.Load(); last == nil || *last != m.Topic {
		if err := CheckTopic(m.Topic); err != nil {
			return lifecycle.ValidationError(ModuleName, "topic", err.Error())
		}
		c.goodTopic.Store(&m.Topic)
	}
	if limit := int(c.maxRecord.Load()); limit > 0 && recordSize(m) > limit {
		return tooLarge(m.Topic, recordSize(m), limit)
	}
	return nil
}

func tooLarge(topic string, size, limit int) error {
	return &lifecycle.InfraError{
		Type: lifecycle.TypeValidation, Component: ModuleName, Op: "send", Field: "value",
		Message: fmt.Sprintf("topic %q: record of %d bytes exceeds producer.maxRecordBytes (%d)", topic, size, limit),
		Cause:   kerr.MessageTooLarge,
	}
}

// sendError turns a franz-go delivery error into an InfraError whose type
// says what to do: VALIDATION (fix the record), CONFIG (create the topic,
// grant access), TIMEOUT or CONNECTION (the cluster). Context errors are
// wrapped, not typed: the caller gave up, the cluster did not fail.
func sendError(topic string, err error) error {
	typ := lifecycle.TypeConnection
	msg := fmt.Sprintf("topic %q: record not delivered", topic)
	field := ""
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("mq: send to topic %q: %w", topic, err)
	case errors.Is(err, kgo.ErrClientClosed):
		typ, err = lifecycle.TypeInternal, fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge):
		typ, field = lifecycle.TypeValidation, "value"
		msg = fmt.Sprintf("topic %q: the broker refused the record as too large (its message.max.bytes is below the record; lower producer.maxRecordBytes or raise the topic's max.message.bytes)", topic)
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		typ, field = lifecycle.TypeConfig, "topic"
		msg = fmt.Sprintf("topic %q does not exist: define it under topics or create it", topic)
	case errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed):
		typ, field = lifecycle.TypeConfig, "topic"
		msg = fmt.Sprintf("topic %q: not authorized to write", topic)
	case errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kerr.RequestTimedOut):
		typ = lifecycle.TypeTimeout
		msg = fmt.Sprintf("topic %q: record not delivered within producer.deliveryTimeout", topic)
	}
	return &lifecycle.InfraError{Type: typ, Component: ModuleName, Op: "send", Field: field, Message: msg, Cause: err}
}
