package db

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

// meterName is the instrumentation scope of every db instrument.
const meterName = "github.com/gochat/im-infra/modules/db"

// operations are gorm's callback processors; each statement runs through
// exactly one of them.
var operations = []string{"create", "query", "update", "delete", "row", "raw"}

// durationBuckets suit statements: 0.5 ms (a point select on a local
// server) to 10 s.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// instruments are the synchronous instruments and the pool's observable ones.
type instruments struct {
	duration metric.Float64Histogram
	errors   metric.Int64Counter
	retries  metric.Int64Counter
	byOp     map[string]metric.MeasurementOption
	restart  atomic.Bool
	reg      metric.Registration
}

func newInstruments(mp metric.MeterProvider, stats func() sql.DBStats) (*instruments, error) {
	m := mp.Meter(meterName)
	in := &instruments{byOp: make(map[string]metric.MeasurementOption, len(operations))}
	for _, op := range operations {
		in.byOp[op] = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", op)))
	}
	var err error
	if in.duration, err = m.Float64Histogram("db.query.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Time a statement took, by gorm operation."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if in.errors, err = m.Int64Counter("db.query.errors",
		metric.WithUnit("{error}"),
		metric.WithDescription("Statements that failed (record-not-found is not a failure), by gorm operation.")); err != nil {
		return nil, err
	}
	if in.retries, err = m.Int64Counter("db.transaction.retries",
		metric.WithUnit("{retry}"),
		metric.WithDescription("Transactions run again by RetryTransaction after a deadlock or serialization failure.")); err != nil {
		return nil, err
	}
	open, err := m.Int64ObservableGauge("db.pool.open", metric.WithUnit("{connection}"),
		metric.WithDescription("Open connections, in use plus idle."))
	if err != nil {
		return nil, err
	}
	inUse, err := m.Int64ObservableGauge("db.pool.in_use", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections running a statement or held by a transaction."))
	if err != nil {
		return nil, err
	}
	idle, err := m.Int64ObservableGauge("db.pool.idle", metric.WithUnit("{connection}"),
		metric.WithDescription("Idle connections."))
	if err != nil {
		return nil, err
	}
	maxOpen, err := m.Int64ObservableGauge("db.pool.max_open", metric.WithUnit("{connection}"),
		metric.WithDescription("The pool's cap (maxOpenConns), as applied now."))
	if err != nil {
		return nil, err
	}
	waits, err := m.Int64ObservableCounter("db.pool.waits", metric.WithUnit("{wait}"),
		metric.WithDescription("Times a caller waited for a free connection."))
	if err != nil {
		return nil, err
	}
	waited, err := m.Float64ObservableCounter("db.pool.wait_duration", metric.WithUnit("s"),
		metric.WithDescription("Total time callers waited for a free connection."))
	if err != nil {
		return nil, err
	}
	restart, err := m.Int64ObservableGauge("db.config.restart_pending",
		metric.WithDescription("1 while the config holds a change that only a restart applies (driver, address, credentials, TLS, dialTimeout)."))
	if err != nil {
		return nil, err
	}
	in.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		o.ObserveInt64(open, int64(s.OpenConnections))
		o.ObserveInt64(inUse, int64(s.InUse))
		o.ObserveInt64(idle, int64(s.Idle))
		o.ObserveInt64(maxOpen, int64(s.MaxOpenConnections))
		o.ObserveInt64(waits, s.WaitCount)
		o.ObserveFloat64(waited, s.WaitDuration.Seconds())
		var pending int64
		if in.restart.Load() {
			pending = 1
		}
		o.ObserveInt64(restart, pending)
		return nil
	}, open, inUse, idle, maxOpen, waits, waited, restart)
	if err != nil {
		return nil, err
	}
	return in, nil
}

func (in *instruments) close() {
	if in.reg != nil {
		_ = in.reg.Unregister()
	}
}

// instrumentation is the gorm plugin that times every statement, counts
// failures, logs failed, slow (or, at info, all) statements and, with a
// TracerProvider, wraps each in a client span. It replaces gorm's
// OpenTelemetry plugin, which links every database driver it knows.
type instrumentation struct {
	in     *instruments
	log    *sqlLogger
	tracer trace.Tracer // nil: no spans
	system attribute.KeyValue
}

// callState carries a statement's start from the before-callback to the
// after-callback. It is the statement's context for the time between (one
// allocation per statement, where a context.WithValue would make two).
type callState struct {
	context.Context                 // what the statement runs with
	orig            context.Context // the caller's, restored afterwards
	start           time.Time
	span            trace.Span
}

type callStateKey struct{}

// Value finds the callState even under contexts derived from it.
func (c *callState) Value(key any) any {
	if key == (callStateKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (p *instrumentation) Name() string { return "im-infra:db" }

// Initialize registers a first and a last callback on every processor.
func (p *instrumentation) Initialize(g *gorm.DB) error {
	cb := g.Callback()
	type registrar interface {
		Register(name string, fn func(*gorm.DB)) error
	}
	for _, op := range operations {
		var before, after registrar
		switch op {
		case "create":
			before, after = cb.Create().Before("*"), cb.Create().After("*")
		case "query":
			before, after = cb.Query().Before("*"), cb.Query().After("*")
		case "update":
			before, after = cb.Update().Before("*"), cb.Update().After("*")
		case "delete":
			before, after = cb.Delete().Before("*"), cb.Delete().After("*")
		case "row":
			before, after = cb.Row().Before("*"), cb.Row().After("*")
		case "raw":
			before, after = cb.Raw().Before("*"), cb.Raw().After("*")
		}
		if err := before.Register("im-infra:before_"+op, p.before(op)); err != nil {
			return err
		}
		if err := after.Register("im-infra:after_"+op, p.after(op)); err != nil {
			return err
		}
	}
	return nil
}

func (p *instrumentation) before(op string) func(*gorm.DB) {
	spanName := "db " + op
	return func(g *gorm.DB) {
		st := &callState{Context: g.Statement.Context, orig: g.Statement.Context, start: time.Now()}
		if p.tracer != nil {
			st.Context, st.span = p.tracer.Start(st.orig, spanName, trace.WithSpanKind(trace.SpanKindClient))
		}
		g.Statement.Context = st
	}
}

func (p *instrumentation) after(op string) func(*gorm.DB) {
	// Built once: a variadic option would otherwise allocate per call.
	record := []metric.RecordOption{p.in.byOp[op]}
	add := []metric.AddOption{p.in.byOp[op]}
	opAttr := attribute.String("db.operation.name", op)
	return func(g *gorm.DB) {
		st, ok := g.Statement.Context.(*callState)
		if !ok {
			if st, ok = g.Statement.Context.Value(callStateKey{}).(*callState); !ok {
				return
			}
		}
		took := time.Since(st.start)
		g.Statement.Context = st.orig
		err := g.Error
		failed := err != nil && !errors.Is(err, gorm.ErrRecordNotFound)
		sql := &g.Statement.SQL
		if st.span != nil {
			st.span.SetAttributes(p.system, opAttr,
				attribute.String("db.collection.name", g.Statement.Table),
				attribute.String("db.query.text", sql.String()))
			if failed {
				st.span.RecordError(err)
				st.span.SetStatus(codes.Error, "statement failed")
			}
			st.span.End()
		}
		if sql.Len() == 0 && !failed {
			return // nothing ran (an empty batch, a dry run)
		}
		p.in.duration.Record(st.orig, took.Seconds(), record...)
		if failed {
			p.in.errors.Add(st.orig, 1, add...)
		}
		log := p.log
		if l, ok := g.Logger.(*sqlLogger); ok {
			log = l // a session's own level (db.Debug())
		}
		log.statement(st.orig, op, sql, g.RowsAffected, took, err)
	}
}

// systemName is the OpenTelemetry db.system.name of a driver.
func systemName(driver string) attribute.KeyValue {
	switch driver {
	case DriverPostgres:
		return attribute.String("db.system.name", "postgresql")
	case DriverSQLite:
		return attribute.String("db.system.name", "sqlite")
	}
	return attribute.String("db.system.name", "mysql")
}
