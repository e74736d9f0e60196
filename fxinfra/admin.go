package fxinfra

import (
	"context"
	"fmt"
	"net"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// AdminComponent is the admin server's config component.
const AdminComponent = "admin"

// The admin address can be set per process, which the config center cannot
// do for several instances of one service on one machine. The flag wins
// over the variable, and both over the config document.
const (
	FlagAdminAddr = "admin-addr"
	EnvAdminAddr  = "IMINFRA_ADMIN_ADDR"
)

// AdminConfig is the admin server's config, component "admin".
type AdminConfig struct {
	// Addr is where /healthz, /readyz, /metrics and pprof listen. Read at
	// start; a change needs a restart (logged). -admin-addr or
	// IMINFRA_ADMIN_ADDR override it.
	Addr string `json:"addr"`
	// Pprof mounts /debug/pprof. Read at start.
	Pprof bool `json:"pprof"`
	// DrainDelay is how long /readyz answers 503 before the service's stop
	// hooks run, so load balancers stop sending traffic first. Live. At most
	// lifecycle.MaxDrainDelay, and never more than half of the stop timeout
	// that is left when stopping begins.
	DrainDelay config.Duration `json:"drainDelay"`
}

// Defaults: loopback on 9090, no pprof, no drain delay.
func (AdminConfig) Defaults() AdminConfig {
	return AdminConfig{Addr: lifecycle.DefaultAdminAddr}
}

// Validate checks the address and the delay.
func (c AdminConfig) Validate() error {
	if err := validAddr(c.Addr); err != nil {
		return lifecycle.ValidationError(AdminComponent, "addr", err.Error())
	}
	if c.DrainDelay < 0 {
		return lifecycle.ValidationError(AdminComponent, "drainDelay", "must not be negative")
	}
	if c.DrainDelay.Std() > lifecycle.MaxDrainDelay {
		return lifecycle.ValidationError(AdminComponent, "drainDelay",
			fmt.Sprintf("%s is longer than the maximum %s: the stop hooks after the drain need the rest of the stop timeout", c.DrainDelay, lifecycle.MaxDrainDelay))
	}
	return nil
}

func validAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not host:port (for example 127.0.0.1:9090, or :0 for any free port)", addr)
	}
	return nil
}

var adminModule = fx.Module(AdminComponent,
	fx.Provide(
		config.ProvideValue[AdminConfig](AdminComponent),
		newAdminServer,
	),
)

func newAdminServer(agg *lifecycle.Aggregator, ready *lifecycle.Readiness, log *zap.Logger) *lifecycle.AdminServer {
	return lifecycle.NewAdminServer(lifecycle.AdminOptions{}, agg, ready, clog.ModuleLogger(log, AdminComponent))
}

// registerAdmin configures the server from its Value (started by its own
// hook, which runs first) and the -admin-addr override, then hands it to
// lifecycle.RegisterAdmin: listen last on start, drain and stop first on
// stop. It is a root-level invoke so that its hooks come after every
// module's.
func registerAdmin(lc fx.Lifecycle, v *config.Value[AdminConfig], s *lifecycle.AdminServer, ready *lifecycle.Readiness, env lifecycle.Environ, root *zap.Logger) error {
	log := clog.ModuleLogger(root, AdminComponent)
	override := env.Lookup(FlagAdminAddr, EnvAdminAddr)
	if override != "" {
		if err := validAddr(override); err != nil {
			return lifecycle.ValidationError(AdminComponent, "addr", fmt.Sprintf("-%s / %s: %v", FlagAdminAddr, EnvAdminAddr, err))
		}
	}
	var cancel func()
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			first := true
			cancel = v.Subscribe(func(old, cfg AdminConfig) {
				ready.SetDrainDelay(cfg.DrainDelay.Std())
				if first {
					first = false
					addr := cfg.Addr
					if override != "" {
						addr = override
						log.Info("admin address set by flag or environment", zap.String("addr", addr), zap.String("config_addr", cfg.Addr))
					}
					s.Configure(lifecycle.AdminOptions{Addr: addr, EnablePprof: cfg.Pprof})
					return
				}
				if old.Addr != cfg.Addr || old.Pprof != cfg.Pprof {
					log.Warn("admin addr and pprof changes apply at the next restart",
						zap.String("addr", old.Addr), zap.String("new_addr", cfg.Addr), zap.Bool("new_pprof", cfg.Pprof))
				}
			})
			return nil
		},
		OnStop: func(context.Context) error {
			if cancel != nil {
				cancel()
			}
			return nil
		},
	})
	lifecycle.RegisterAdmin(lc, s, ready)
	return nil
}
