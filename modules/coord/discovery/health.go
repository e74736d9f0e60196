package discovery

import (
	"context"
	"slices"

	"github.com/gochat/im-infra/lifecycle"
)

// HealthChecker reports the registry's health as "registry": healthy when
// every registered instance is in etcd (or none is registered), degraded
// while one is not: its registration is still being retried (etcd was down
// when it registered) or is being restored after a lost lease or a deleted
// key. An instance that peers cannot discover shows up in /readyz.
type HealthChecker struct {
	r *Registry
}

var _ lifecycle.Checker = (*HealthChecker)(nil)

// NewHealthChecker returns the checker for r.
func NewHealthChecker(r *Registry) *HealthChecker { return &HealthChecker{r: r} }

// Name implements lifecycle.Checker.
func (h *HealthChecker) Name() string { return RegistryComponent }

// Check implements lifecycle.Checker; it does no I/O.
func (h *HealthChecker) Check(context.Context) lifecycle.Status {
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
		return lifecycle.Status{State: lifecycle.Degraded, Message: "instance not discoverable; registering it again", Details: details}
	}
	return lifecycle.Status{State: lifecycle.Healthy, Details: details}
}
