package coord

import (
	"context"

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
func (h *HealthChecker) Name() string { return ModuleName }

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
