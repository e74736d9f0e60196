package coord

import (
	"context"
	"slices"

	"github.com/gochat/im-infra/lifecycle"
)

// DegradedMessage is what the health check says while etcd does not answer.
const DegradedMessage = "etcd unreachable; running on snapshot/defaults"

// HealthChecker reports coord's health as "coord": healthy while etcd
// answers a probe, degraded (never unhealthy) while it does not, because a
// service keeps serving from its last good config through an etcd outage.
type HealthChecker struct {
	c *Client
}

var _ lifecycle.Checker = (*HealthChecker)(nil)

// NewHealthChecker returns the checker for c.
func NewHealthChecker(c *Client) *HealthChecker { return &HealthChecker{c: c} }

// Name implements lifecycle.Checker.
func (h *HealthChecker) Name() string { return component }

// Check reports the state the client's monitor keeps current (see
// Client.Start), so it never waits on etcd: a probe that hung on a
// partitioned network would otherwise time out in the aggregator and turn
// an etcd outage, which the service survives, into "unhealthy". Before the
// monitor runs it probes once.
func (h *HealthChecker) Check(ctx context.Context) lifecycle.Status {
	details := map[string]any{"endpoints": h.c.safeEndpoints()}
	if !h.c.probed.Load() {
		_ = h.c.Probe(ctx)
	}
	if !h.c.Connected() {
		if err := h.c.LastError(); err != nil {
			details["error"] = err.Error()
		}
		return lifecycle.Status{State: lifecycle.Degraded, Message: DegradedMessage, Details: details}
	}
	return lifecycle.Status{State: lifecycle.Healthy, Details: details}
}

// RegistryChecker reports the registry's health as "registry": healthy when
// every registered instance is live in etcd (or none is registered),
// degraded while one is being re-registered after losing its lease, so an
// instance that peers cannot discover shows up in /readyz.
type RegistryChecker struct {
	r *Registry
}

var _ lifecycle.Checker = (*RegistryChecker)(nil)

// NewRegistryChecker returns the checker for r.
func NewRegistryChecker(r *Registry) *RegistryChecker { return &RegistryChecker{r: r} }

// Name implements lifecycle.Checker.
func (h *RegistryChecker) Name() string { return "registry" }

// Check implements lifecycle.Checker; it does no I/O.
func (h *RegistryChecker) Check(context.Context) lifecycle.Status {
	h.r.mu.Lock()
	var live, lost []string
	for id, e := range h.r.entries {
		if e.live.Load() {
			live = append(live, id)
		} else {
			lost = append(lost, id)
		}
	}
	h.r.mu.Unlock()
	slices.Sort(live)
	slices.Sort(lost)
	details := map[string]any{"registered": live, "reregistrations": h.r.Reregistrations()}
	if len(lost) > 0 {
		details["reregistering"] = lost
		return lifecycle.Status{State: lifecycle.Degraded, Message: "instance not discoverable; re-registering", Details: details}
	}
	return lifecycle.Status{State: lifecycle.Healthy, Details: details}
}
