package fxinfra

import (
	"context"
	"errors"
	"fmt"
	"net"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// AdminConfig is the admin server's config, component "admin".
type AdminConfig struct {
	// Addr is where /healthz, /readyz, /metrics and pprof listen. Read at
	// start; a change needs a restart (logged).
	Addr string `json:"addr"`
	// Pprof mounts /debug/pprof. Read at start.
	Pprof bool `json:"pprof"`
	// DrainDelay is how long /readyz answers 503 before the service's stop
	// hooks run, so load balancers stop sending traffic first. Live.
	DrainDelay config.Duration `json:"drainDelay"`
}

// Defaults: loopback on 9090, no pprof, no drain delay.
func (AdminConfig) Defaults() AdminConfig {
	return AdminConfig{Addr: lifecycle.DefaultAdminAddr}
}

// Validate checks the address and the delay.
func (c AdminConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return lifecycle.ValidationError("admin", "addr", fmt.Sprintf("%q is not host:port", c.Addr))
	}
	if c.DrainDelay < 0 {
		return lifecycle.ValidationError("admin", "drainDelay", "must not be negative")
	}
	return nil
}

var adminModule = fx.Module("admin",
	fx.Provide(
		config.ProvideValue[AdminConfig]("admin"),
		newAdminServer,
	),
	fx.Invoke(registerAdmin),
)

func newAdminServer(agg *lifecycle.Aggregator, ready *lifecycle.Readiness, log *zap.Logger) *lifecycle.AdminServer {
	return lifecycle.NewAdminServer(lifecycle.AdminOptions{}, agg, ready, log.Named("admin"))
}

// registerAdmin loads the admin config and starts the server in one hook,
// registered after every module's hooks, so probes see a started service.
func registerAdmin(lc fx.Lifecycle, v *config.Value[AdminConfig], s *lifecycle.AdminServer, ready *lifecycle.Readiness, log *zap.Logger) {
	var cancel func()
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := v.Start(ctx); err != nil {
				return err
			}
			cfg := v.Get()
			ready.SetDrainDelay(cfg.DrainDelay.Std())
			cancel = v.Subscribe(func(old, cfg AdminConfig) {
				ready.SetDrainDelay(cfg.DrainDelay.Std())
				if old.Addr != cfg.Addr || old.Pprof != cfg.Pprof {
					log.Warn("admin: addr and pprof changes apply at the next restart",
						zap.String("addr", old.Addr), zap.String("new_addr", cfg.Addr), zap.Bool("new_pprof", cfg.Pprof))
				}
			})
			s.Configure(lifecycle.AdminOptions{Addr: cfg.Addr, EnablePprof: cfg.Pprof})
			return s.Start(ctx)
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			return errors.Join(s.Stop(ctx), v.Stop(ctx))
		},
	})
}
