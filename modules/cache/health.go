package cache

import (
	"context"

	"github.com/gochat/im-infra/lifecycle"
)

// NewHealthChecker reports c as "cache": healthy when Redis answers PING
// within commandTimeout (or the aggregator's deadline, if sooner),
// unhealthy otherwise, with the error and the mode in the details.
func NewHealthChecker(c *Client) lifecycle.Checker {
	return lifecycle.CheckerFunc(ModuleName, func(ctx context.Context) lifecycle.Status {
		s := c.sess.Load()
		if s == nil {
			return lifecycle.Status{State: lifecycle.Unhealthy, Message: "not connected"}
		}
		details := map[string]any{"mode": s.cfg.Mode, "addresses": s.cfg.Addresses, "client_cache": s.tracking}
		if err := c.ping(ctx); err != nil { // health failures are not counted as call errors
			return lifecycle.Status{State: lifecycle.Unhealthy, Message: err.Error(), Details: details}
		}
		return lifecycle.Status{State: lifecycle.Healthy, Details: details}
	})
}
