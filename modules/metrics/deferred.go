package metrics

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/trace"
	traceembedded "go.opentelemetry.io/otel/trace/embedded"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// The providers in the fx graph must exist in phase 1, when the other
// modules' constructors create their instruments and tracers, but the SDK
// they feed depends on config (buckets, prefix, exporter) that is only
// loaded in phase 2. So the module hands out deferred providers: Meters,
// instruments and Tracers made before start are placeholders that bind to
// the SDK's when it is built, and everything made after start comes from
// the SDK directly. Measurements and spans made before start are dropped.

// deferredMeterProvider is a metric.MeterProvider that binds once.
type deferredMeterProvider struct {
	embedded.MeterProvider

	bound  atomic.Pointer[meterProviderRef]
	mu     sync.Mutex
	meters []*deferredMeter
}

type meterProviderRef struct{ mp metric.MeterProvider }

// Meter returns the SDK's Meter once bound, else a placeholder.
func (d *deferredMeterProvider) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	if b := d.bound.Load(); b != nil {
		return b.mp.Meter(name, opts...)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.bound.Load(); b != nil {
		return b.mp.Meter(name, opts...)
	}
	m := &deferredMeter{name: name, opts: opts}
	d.meters = append(d.meters, m)
	return m
}

// bind makes every placeholder forward to mp. It returns the errors of
// instruments that mp refused (an invalid name, say); those stay no-ops.
func (d *deferredMeterProvider) bind(mp metric.MeterProvider) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, m := range d.meters {
		errs = append(errs, m.bind(mp.Meter(m.name, m.opts...)))
	}
	d.meters = nil
	d.bound.Store(&meterProviderRef{mp})
	return errors.Join(errs...)
}

// deferredMeter records what is asked of it until bind.
type deferredMeter struct {
	embedded.Meter

	name string
	opts []metric.MeterOption

	real      atomic.Pointer[meterRef]
	mu        sync.Mutex
	pending   []binder
	callbacks []*deferredRegistration
}

type meterRef struct{ m metric.Meter }

// binder is a placeholder instrument.
type binder interface{ bind(metric.Meter) error }

func (m *deferredMeter) bind(real metric.Meter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, in := range m.pending {
		errs = append(errs, in.bind(real))
	}
	for _, r := range m.callbacks {
		reg, err := registerForwarded(real, r.cb, r.insts)
		errs = append(errs, err)
		r.real = reg
	}
	m.pending, m.callbacks = nil, nil
	m.real.Store(&meterRef{real})
	return errors.Join(errs...)
}

// create returns the SDK's instrument once bound; before that a
// placeholder that bind completes with mk.
func create[I any](m *deferredMeter, mk func(metric.Meter) (I, error), placeholder func() (I, binder)) (I, error) {
	if r := m.real.Load(); r != nil {
		return mk(r.m)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.real.Load(); r != nil {
		return mk(r.m)
	}
	in, b := placeholder()
	m.pending = append(m.pending, b)
	return in, nil
}

func (m *deferredMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	mk := func(r metric.Meter) (metric.Int64Counter, error) { return r.Int64Counter(name, opts...) }
	return create(m, mk, func() (metric.Int64Counter, binder) {
		p := &int64Counter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Int64UpDownCounter(name string, opts ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	mk := func(r metric.Meter) (metric.Int64UpDownCounter, error) { return r.Int64UpDownCounter(name, opts...) }
	return create(m, mk, func() (metric.Int64UpDownCounter, binder) {
		p := &int64UpDownCounter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Int64Histogram(name string, opts ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	mk := func(r metric.Meter) (metric.Int64Histogram, error) { return r.Int64Histogram(name, opts...) }
	return create(m, mk, func() (metric.Int64Histogram, binder) {
		p := &int64Histogram{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Int64Gauge(name string, opts ...metric.Int64GaugeOption) (metric.Int64Gauge, error) {
	mk := func(r metric.Meter) (metric.Int64Gauge, error) { return r.Int64Gauge(name, opts...) }
	return create(m, mk, func() (metric.Int64Gauge, binder) {
		p := &int64Gauge{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Float64Counter(name string, opts ...metric.Float64CounterOption) (metric.Float64Counter, error) {
	mk := func(r metric.Meter) (metric.Float64Counter, error) { return r.Float64Counter(name, opts...) }
	return create(m, mk, func() (metric.Float64Counter, binder) {
		p := &float64Counter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Float64UpDownCounter(name string, opts ...metric.Float64UpDownCounterOption) (metric.Float64UpDownCounter, error) {
	mk := func(r metric.Meter) (metric.Float64UpDownCounter, error) {
		return r.Float64UpDownCounter(name, opts...)
	}
	return create(m, mk, func() (metric.Float64UpDownCounter, binder) {
		p := &float64UpDownCounter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	mk := func(r metric.Meter) (metric.Float64Histogram, error) { return r.Float64Histogram(name, opts...) }
	return create(m, mk, func() (metric.Float64Histogram, binder) {
		p := &float64Histogram{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Float64Gauge(name string, opts ...metric.Float64GaugeOption) (metric.Float64Gauge, error) {
	mk := func(r metric.Meter) (metric.Float64Gauge, error) { return r.Float64Gauge(name, opts...) }
	return create(m, mk, func() (metric.Float64Gauge, binder) {
		p := &float64Gauge{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Int64ObservableCounter(name string, opts ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	mk := func(r metric.Meter) (metric.Int64ObservableCounter, error) {
		return r.Int64ObservableCounter(name, opts...)
	}
	return create(m, mk, func() (metric.Int64ObservableCounter, binder) {
		p := &int64ObservableCounter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Int64ObservableUpDownCounter(name string, opts ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	mk := func(r metric.Meter) (metric.Int64ObservableUpDownCounter, error) {
		return r.Int64ObservableUpDownCounter(name, opts...)
	}
	return create(m, mk, func() (metric.Int64ObservableUpDownCounter, binder) {
		p := &int64ObservableUpDownCounter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Int64ObservableGauge(name string, opts ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	mk := func(r metric.Meter) (metric.Int64ObservableGauge, error) {
		return r.Int64ObservableGauge(name, opts...)
	}
	return create(m, mk, func() (metric.Int64ObservableGauge, binder) {
		p := &int64ObservableGauge{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Float64ObservableCounter(name string, opts ...metric.Float64ObservableCounterOption) (metric.Float64ObservableCounter, error) {
	mk := func(r metric.Meter) (metric.Float64ObservableCounter, error) {
		return r.Float64ObservableCounter(name, opts...)
	}
	return create(m, mk, func() (metric.Float64ObservableCounter, binder) {
		p := &float64ObservableCounter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Float64ObservableUpDownCounter(name string, opts ...metric.Float64ObservableUpDownCounterOption) (metric.Float64ObservableUpDownCounter, error) {
	mk := func(r metric.Meter) (metric.Float64ObservableUpDownCounter, error) {
		return r.Float64ObservableUpDownCounter(name, opts...)
	}
	return create(m, mk, func() (metric.Float64ObservableUpDownCounter, binder) {
		p := &float64ObservableUpDownCounter{}
		p.make = mk
		return p, p
	})
}

func (m *deferredMeter) Float64ObservableGauge(name string, opts ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	mk := func(r metric.Meter) (metric.Float64ObservableGauge, error) {
		return r.Float64ObservableGauge(name, opts...)
	}
	return create(m, mk, func() (metric.Float64ObservableGauge, binder) {
		p := &float64ObservableGauge{}
		p.make = mk
		return p, p
	})
}

// RegisterCallback registers cb with the SDK once bound. Placeholders
// among insts, and those cb observes, are swapped for the SDK's
// instruments.
func (m *deferredMeter) RegisterCallback(cb metric.Callback, insts ...metric.Observable) (metric.Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.real.Load(); r != nil {
		return registerForwarded(r.m, cb, insts)
	}
	reg := &deferredRegistration{meter: m, cb: cb, insts: slices.Clone(insts)}
	m.callbacks = append(m.callbacks, reg)
	return reg, nil
}

// registerForwarded registers cb on real, translating placeholders.
func registerForwarded(real metric.Meter, cb metric.Callback, insts []metric.Observable) (metric.Registration, error) {
	direct := make([]metric.Observable, 0, len(insts))
	translated := false
	for _, in := range insts {
		if p, ok := in.(observablePlaceholder); ok {
			translated = true
			if in = p.observable(); in == nil {
				continue // refused at bind; nothing to observe
			}
		}
		direct = append(direct, in)
	}
	if !translated {
		return real.RegisterCallback(cb, insts...)
	}
	return real.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		return cb(ctx, forwardingObserver{o: o})
	}, direct...)
}

// deferredRegistration is a callback registered before bind.
type deferredRegistration struct {
	embedded.Registration

	meter *deferredMeter
	cb    metric.Callback
	insts []metric.Observable
	real  metric.Registration // set by bind, under meter.mu
}

func (r *deferredRegistration) Unregister() error {
	r.meter.mu.Lock()
	defer r.meter.mu.Unlock()
	if r.real != nil {
		return r.real.Unregister()
	}
	r.meter.callbacks = slices.DeleteFunc(r.meter.callbacks, func(x *deferredRegistration) bool { return x == r })
	return nil
}

// observablePlaceholder is an observable instrument made before bind.
type observablePlaceholder interface {
	observable() metric.Observable // nil before bind or when refused
}

// forwardingObserver swaps placeholders for the SDK's instruments.
type forwardingObserver struct {
	embedded.Observer
	o metric.Observer
}

func (f forwardingObserver) ObserveFloat64(in metric.Float64Observable, v float64, opts ...metric.ObserveOption) {
	if p, ok := in.(observablePlaceholder); ok {
		real, _ := p.observable().(metric.Float64Observable)
		if real == nil {
			return
		}
		in = real
	}
	f.o.ObserveFloat64(in, v, opts...)
}

func (f forwardingObserver) ObserveInt64(in metric.Int64Observable, v int64, opts ...metric.ObserveOption) {
	if p, ok := in.(observablePlaceholder); ok {
		real, _ := p.observable().(metric.Int64Observable)
		if real == nil {
			return
		}
		in = real
	}
	f.o.ObserveInt64(in, v, opts...)
}

// slot holds the SDK instrument of a placeholder once bound.
type slot[I any] struct {
	make func(metric.Meter) (I, error)
	real atomic.Pointer[I]
}

func (s *slot[I]) bind(m metric.Meter) error {
	in, err := s.make(m)
	if err == nil {
		s.real.Store(&in)
	}
	return err
}

func (s *slot[I]) get() (I, bool) {
	if p := s.real.Load(); p != nil {
		return *p, true
	}
	var zero I
	return zero, false
}

// Synchronous placeholders: a measurement before bind is dropped.

type int64Counter struct {
	embedded.Int64Counter
	slot[metric.Int64Counter]
}

func (i *int64Counter) Add(ctx context.Context, v int64, opts ...metric.AddOption) {
	if r, ok := i.get(); ok {
		r.Add(ctx, v, opts...)
	}
}

func (i *int64Counter) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

type int64UpDownCounter struct {
	embedded.Int64UpDownCounter
	slot[metric.Int64UpDownCounter]
}

func (i *int64UpDownCounter) Add(ctx context.Context, v int64, opts ...metric.AddOption) {
	if r, ok := i.get(); ok {
		r.Add(ctx, v, opts...)
	}
}

func (i *int64UpDownCounter) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

type int64Histogram struct {
	embedded.Int64Histogram
	slot[metric.Int64Histogram]
}

func (i *int64Histogram) Record(ctx context.Context, v int64, opts ...metric.RecordOption) {
	if r, ok := i.get(); ok {
		r.Record(ctx, v, opts...)
	}
}

func (i *int64Histogram) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

type int64Gauge struct {
	embedded.Int64Gauge
	slot[metric.Int64Gauge]
}

func (i *int64Gauge) Record(ctx context.Context, v int64, opts ...metric.RecordOption) {
	if r, ok := i.get(); ok {
		r.Record(ctx, v, opts...)
	}
}

func (i *int64Gauge) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

type float64Counter struct {
	embedded.Float64Counter
	slot[metric.Float64Counter]
}

func (i *float64Counter) Add(ctx context.Context, v float64, opts ...metric.AddOption) {
	if r, ok := i.get(); ok {
		r.Add(ctx, v, opts...)
	}
}

func (i *float64Counter) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

type float64UpDownCounter struct {
	embedded.Float64UpDownCounter
	slot[metric.Float64UpDownCounter]
}

func (i *float64UpDownCounter) Add(ctx context.Context, v float64, opts ...metric.AddOption) {
	if r, ok := i.get(); ok {
		r.Add(ctx, v, opts...)
	}
}

func (i *float64UpDownCounter) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

type float64Histogram struct {
	embedded.Float64Histogram
	slot[metric.Float64Histogram]
}

func (i *float64Histogram) Record(ctx context.Context, v float64, opts ...metric.RecordOption) {
	if r, ok := i.get(); ok {
		r.Record(ctx, v, opts...)
	}
}

func (i *float64Histogram) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

type float64Gauge struct {
	embedded.Float64Gauge
	slot[metric.Float64Gauge]
}

func (i *float64Gauge) Record(ctx context.Context, v float64, opts ...metric.RecordOption) {
	if r, ok := i.get(); ok {
		r.Record(ctx, v, opts...)
	}
}

func (i *float64Gauge) Enabled(ctx context.Context) bool {
	r, ok := i.get()
	return ok && r.Enabled(ctx)
}

// Observable placeholders. Callbacks given as options travel to the SDK
// instrument made at bind; the embedded interfaces only satisfy the API's
// unexported marker methods.

type int64ObservableCounter struct {
	metric.Int64Observable
	embedded.Int64ObservableCounter
	slot[metric.Int64ObservableCounter]
}

func (i *int64ObservableCounter) observable() metric.Observable {
	if r, ok := i.get(); ok {
		return r
	}
	return nil
}

type int64ObservableUpDownCounter struct {
	metric.Int64Observable
	embedded.Int64ObservableUpDownCounter
	slot[metric.Int64ObservableUpDownCounter]
}

func (i *int64ObservableUpDownCounter) observable() metric.Observable {
	if r, ok := i.get(); ok {
		return r
	}
	return nil
}

type int64ObservableGauge struct {
	metric.Int64Observable
	embedded.Int64ObservableGauge
	slot[metric.Int64ObservableGauge]
}

func (i *int64ObservableGauge) observable() metric.Observable {
	if r, ok := i.get(); ok {
		return r
	}
	return nil
}

type float64ObservableCounter struct {
	metric.Float64Observable
	embedded.Float64ObservableCounter
	slot[metric.Float64ObservableCounter]
}

func (i *float64ObservableCounter) observable() metric.Observable {
	if r, ok := i.get(); ok {
		return r
	}
	return nil
}

type float64ObservableUpDownCounter struct {
	metric.Float64Observable
	embedded.Float64ObservableUpDownCounter
	slot[metric.Float64ObservableUpDownCounter]
}

func (i *float64ObservableUpDownCounter) observable() metric.Observable {
	if r, ok := i.get(); ok {
		return r
	}
	return nil
}

type float64ObservableGauge struct {
	metric.Float64Observable
	embedded.Float64ObservableGauge
	slot[metric.Float64ObservableGauge]
}

func (i *float64ObservableGauge) observable() metric.Observable {
	if r, ok := i.get(); ok {
		return r
	}
	return nil
}

// deferredTracerProvider is a trace.TracerProvider that binds once.
// Before bind, and when tracing is off, spans are no-ops that keep the
// span context already in ctx (an incoming traceparent), so trace IDs
// still reach the logs.
type deferredTracerProvider struct {
	traceembedded.TracerProvider

	bound   atomic.Pointer[tracerProviderRef]
	mu      sync.Mutex
	tracers []*deferredTracer
}

type tracerProviderRef struct{ tp trace.TracerProvider }

func (d *deferredTracerProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	if b := d.bound.Load(); b != nil {
		return b.tp.Tracer(name, opts...)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.bound.Load(); b != nil {
		return b.tp.Tracer(name, opts...)
	}
	t := &deferredTracer{name: name, opts: opts}
	d.tracers = append(d.tracers, t)
	return t
}

func (d *deferredTracerProvider) bind(tp trace.TracerProvider) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.tracers {
		real := tp.Tracer(t.name, t.opts...)
		t.real.Store(&real)
	}
	d.tracers = nil
	d.bound.Store(&tracerProviderRef{tp})
}

type deferredTracer struct {
	traceembedded.Tracer

	name string
	opts []trace.TracerOption
	real atomic.Pointer[trace.Tracer]
}

func (t *deferredTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if r := t.real.Load(); r != nil {
		return (*r).Start(ctx, name, opts...)
	}
	return tracenoop.Tracer{}.Start(ctx, name, opts...)
}
