package db

import (
	"context"
	"time"

	"github.com/gochat/im-infra/lifecycle"
)

// HealthChecker reports the database as "db": healthy while a ping
// answers within the dial timeout, unhealthy when it does not.
type HealthChecker struct{ d *DB }

var _ lifecycle.Checker = (*HealthChecker)(nil)

// NewHealthChecker returns the checker for d.
func NewHealthChecker(d *DB) *HealthChecker { return &HealthChecker{d: d} }

// Name implements lifecycle.Checker.
func (h *HealthChecker) Name() string { return ModuleName }

// Check pings within the dial timeout (or ctx, if sooner). The details show
// the pool, so a pool that is exhausted is visible next to a slow ping.
func (h *HealthChecker) Check(ctx context.Context) lifecycle.Status {
	if !h.d.opened.Load() {
		return lifecycle.Status{State: lifecycle.Unhealthy, Message: "not connected yet"}
	}
	ctx, cancel := context.WithTimeout(ctx, h.d.Config().DialTimeout.Std())
	defer cancel()
	start := time.Now()
	err := h.d.Ping(ctx)
	s := h.d.Stats()
	details := map[string]any{
		"driver":   h.d.conn.driver,
		"address":  h.d.conn.address,
		"open":     s.OpenConnections,
		"in_use":   s.InUse,
		"idle":     s.Idle,
		"max_open": s.MaxOpenConnections,
		"ping_ms":  time.Since(start).Milliseconds(),
	}
	if err != nil {
		details["error"] = err.Error()
		return lifecycle.Status{State: lifecycle.Unhealthy, Message: "database does not answer", Details: details}
	}
	return lifecycle.Status{State: lifecycle.Healthy, Details: details}
}
