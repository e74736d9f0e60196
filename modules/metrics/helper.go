package metrics

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// The helper API records by name, for service code that wants a counter or
// a latency without holding instruments:
//
//	p.Inc(ctx, "orders.placed", attribute.String("channel", "app"))
//	p.Observe(ctx, "orders.place.duration", time.Since(t0).Seconds())
//
// Each name becomes one instrument, created on first use and cached, on the
// standard OTel API underneath; code that needs more (units, descriptions,
// precomputed attribute sets, observable instruments) uses MeterProvider().

// instrumentNameRe is the OTel instrument-name syntax.
var instrumentNameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_./-]{0,254}$`)

type helperKind uint8

const (
	kindCounter helperKind = iota
	kindHistogram
	kindGauge
)

func (k helperKind) String() string {
	return [...]string{"counter (Inc, Add)", "histogram (Observe)", "gauge (Set)"}[k]
}

type helper struct {
	meters *deferredMeterProvider
	log    *zap.Logger

	// entries is copied on write: a name is added once, then only read,
	// and a plain map behind an atomic pointer reads in a string hash and
	// a probe (sync.Map boxes the key and costs four times as much).
	entries atomic.Pointer[map[string]*helperEntry]

	mu      sync.Mutex // creating instruments, refused
	meter   metric.Meter
	refused map[string]struct{} // name + kind: logged already
}

type helperEntry struct {
	kind      helperKind
	counter   metric.Int64Counter
	histogram metric.Float64Histogram
	gauge     metric.Float64Gauge
}

func (h *helper) init(mp *deferredMeterProvider, log *zap.Logger) {
	h.meters, h.log = mp, log
}

// get returns name's instrument of kind, or nil (logged once) when name is
// invalid or already used by another kind.
func (h *helper) get(name string, kind helperKind) *helperEntry {
	if m := h.entries.Load(); m != nil {
		if e, ok := (*m)[name]; ok && e.kind == kind {
			return e
		}
	}
	return h.create(name, kind)
}

func (h *helper) create(name string, kind helperKind) *helperEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var cur map[string]*helperEntry
	if m := h.entries.Load(); m != nil {
		cur = *m
	}
	if e, ok := cur[name]; ok {
		if e.kind == kind {
			return e
		}
		h.refuse(name, kind, fmt.Sprintf("metric %q is a %s; it cannot be used as a %s", name, e.kind, kind))
		return nil
	}
	if !instrumentNameRe.MatchString(name) {
		h.refuse(name, kind, fmt.Sprintf("metric name %q is invalid: start with a letter, then letters, digits, _ . - /, at most 255 characters", name))
		return nil
	}
	if h.meter == nil {
		h.meter = h.meters.Meter(meterName)
	}
	e := &helperEntry{kind: kind}
	var err error
	switch kind {
	case kindCounter:
		e.counter, err = h.meter.Int64Counter(name)
	case kindHistogram:
		e.histogram, err = h.meter.Float64Histogram(name, metric.WithUnit("s"))
	case kindGauge:
		e.gauge, err = h.meter.Float64Gauge(name)
	}
	if err != nil {
		h.refuse(name, kind, fmt.Sprintf("metric %q: the SDK refused it: %v", name, err))
		return nil
	}
	next := make(map[string]*helperEntry, len(cur)+1)
	maps.Copy(next, cur)
	next[name] = e
	h.entries.Store(&next)
	return e
}

// refuse logs msg once per name and kind; h.mu is held.
func (h *helper) refuse(name string, kind helperKind, msg string) {
	key := fmt.Sprint(name, "\x00", kind)
	if _, logged := h.refused[key]; logged {
		return
	}
	if h.refused == nil {
		h.refused = map[string]struct{}{}
	}
	h.refused[key] = struct{}{}
	h.log.Error("metric not recorded", zap.Error(lifecycle.ValidationError(ModuleName, "name", msg)))
}

// Inc adds 1 to the counter name (Prometheus: name_total).
func (p *Provider) Inc(ctx context.Context, name string, attrs ...attribute.KeyValue) {
	p.Add(ctx, name, 1, attrs...)
}

// Add adds n (not negative) to the counter name.
func (p *Provider) Add(ctx context.Context, name string, n int64, attrs ...attribute.KeyValue) {
	if e := p.helper.get(name, kindCounter); e != nil {
		if len(attrs) == 0 {
			e.counter.Add(ctx, n)
			return
		}
		e.counter.Add(ctx, n, metric.WithAttributes(attrs...))
	}
}

// Observe records a duration in seconds in the histogram name, which has
// the configured latency buckets (Prometheus: name_seconds_bucket, _sum,
// _count).
func (p *Provider) Observe(ctx context.Context, name string, seconds float64, attrs ...attribute.KeyValue) {
	if e := p.helper.get(name, kindHistogram); e != nil {
		if len(attrs) == 0 {
			e.histogram.Record(ctx, seconds)
			return
		}
		e.histogram.Record(ctx, seconds, metric.WithAttributes(attrs...))
	}
}

// Set sets the gauge name to value for attrs.
func (p *Provider) Set(ctx context.Context, name string, value float64, attrs ...attribute.KeyValue) {
	if e := p.helper.get(name, kindGauge); e != nil {
		if len(attrs) == 0 {
			e.gauge.Record(ctx, value)
			return
		}
		e.gauge.Record(ctx, value, metric.WithAttributes(attrs...))
	}
}
