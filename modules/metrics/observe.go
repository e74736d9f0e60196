package metrics

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gochat/im-infra/lifecycle"
)

// healthBudget is how long a scrape waits for the health checks. The
// aggregator caches its report for a second and runs the checks in a run
// detached from the caller; a scrape that finds no fresh report within the
// budget shows the last one, so a hung checker never holds a scrape up.
const healthBudget = 250 * time.Millisecond

var healthStates = []lifecycle.State{lifecycle.Healthy, lifecycle.Degraded, lifecycle.Unhealthy}

// healthCache keeps the last report the aggregator delivered in time.
type healthCache struct {
	agg *lifecycle.Aggregator

	mu   sync.Mutex
	last *lifecycle.Report
}

func (h *healthCache) report(ctx context.Context) (lifecycle.Report, bool) {
	cctx, cancel := context.WithTimeout(ctx, healthBudget)
	defer cancel()
	rep := h.agg.Check(cctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if cctx.Err() == nil {
		h.last = &rep
		return rep, true
	}
	if h.last == nil {
		return lifecycle.Report{}, false
	}
	return *h.last, true
}

// observe registers the module's observable instruments: health per
// component, config changes applied and refused per component, and the
// restart-pending flag of the module's own config.
func (p *Provider) observe(m metric.Meter) error {
	restart, err := m.Int64ObservableGauge("metrics.config.restart_pending",
		metric.WithDescription("1 while the metrics config holds a change that only a restart applies."))
	if err != nil {
		return err
	}
	insts := []metric.Observable{restart}

	var health, applied, refused metric.Int64Observable
	if p.health != nil {
		if health, err = m.Int64ObservableGauge("health.status",
			metric.WithDescription("Health of each component as /readyz reports it: 1 for its current state (healthy, degraded, unhealthy), 0 for the other two.")); err != nil {
			return err
		}
		insts = append(insts, health)
	}
	if p.values != nil {
		if applied, err = m.Int64ObservableCounter("config.applied", metric.WithUnit("{change}"),
			metric.WithDescription("Configs a component's Value published from its documents since start, per component (a first load that found documents included; defaults alone are not counted).")); err != nil {
			return err
		}
		if refused, err = m.Int64ObservableCounter("config.refused", metric.WithUnit("{change}"),
			metric.WithDescription("Sets of config layers a component refused (invalid, unknown field, bad JSON) since start; the last valid config stayed in force.")); err != nil {
			return err
		}
		insts = append(insts, applied, refused)
	}

	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		var pending int64
		if p.restart.Load() {
			pending = 1
		}
		o.ObserveInt64(restart, pending)
		if health != nil {
			if rep, ok := p.healthy.report(ctx); ok {
				for name, st := range rep.Checks {
					for _, s := range healthStates {
						var v int64
						if st.State == s {
							v = 1
						}
						o.ObserveInt64(health, v, metric.WithAttributes(
							attribute.String("component", name), attribute.String("state", string(s))))
					}
				}
			}
		}
		if p.values != nil {
			for _, st := range p.values.Statuses() {
				set := metric.WithAttributeSet(attribute.NewSet(attribute.String("component", st.Component)))
				o.ObserveInt64(applied, st.Applied, set)
				o.ObserveInt64(refused, st.Rejected, set)
			}
		}
		return nil
	}, insts...)
	return err
}
