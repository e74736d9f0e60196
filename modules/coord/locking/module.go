package locking

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
)

// ModuleName names the package in config keys, logs, errors and its fx
// module.
const ModuleName = "locking"

// Module provides *Locker, *Elector and *IDAllocator (IDs of the
// identity's service, each held under the instance's name) with their
// shared *config.Value[Config] of component "locking", on the
// *clientv3.Client named "etcd" that coord.Module provides (coord.Module
// includes this module). Each is built only if something asks for it, takes
// its prefixes from the config loaded at start and its TTLs and release
// timeout live, and releases everything it holds in its OnStop, which runs
// before the etcd client closes.
var Module = fx.Module(ModuleName,
	fx.Provide(
		config.ProvideValue[Config](ModuleName),
		newFxLocker,
		newFxElector,
		newFxIDAllocator,
	),
)

type fxParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Etcd      *clientv3.Client `name:"etcd"`
	Config    *config.Value[Config]
	Logger    *zap.Logger
}

// follow subscribes apply to the Value in OnStart (at once with the loaded
// config, then on every change), logs changes that need a restart, and
// appends close as the OnStop. apply gets the config to use: on changes,
// the restart-only fields keep their value from start.
func follow(p fxParams, log *zap.Logger, what string, apply func(cfg Config, first bool) error, closeFn func(context.Context) error) {
	var (
		cancel  func()
		started Config
	)
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			var err error
			first := true
			cancel = p.Config.Subscribe(func(_, cfg Config) {
				if first {
					first, started = false, cfg
					err = apply(cfg, true)
					return
				}
				for _, field := range restartOnly(started, cfg) {
					log.Warn("config change needs a restart; keeping the value from start",
						zap.String("component", ModuleName), zap.String("field", field), zap.String("for", what))
				}
				_ = apply(keepRestartOnly(started, cfg), false)
			})
			return err
		},
		OnStop: func(ctx context.Context) error {
			if cancel != nil {
				cancel()
			}
			began := time.Now()
			err := closeFn(ctx)
			log.Info(what+" closed", zap.Duration("took", time.Since(began)), zap.Error(err))
			return err
		},
	})
}

// restartOnly lists the restart-only fields that differ between a and b.
func restartOnly(a, b Config) []string {
	var out []string
	if a.Locks.Prefix != b.Locks.Prefix {
		out = append(out, "locks.prefix")
	}
	if a.Election.Prefix != b.Election.Prefix {
		out = append(out, "election.prefix")
	}
	if a.IDs.Prefix != b.IDs.Prefix {
		out = append(out, "ids.prefix")
	}
	if a.IDs.Max != b.IDs.Max {
		out = append(out, "ids.max")
	}
	return out
}

// keepRestartOnly is b with the restart-only fields of a.
func keepRestartOnly(a, b Config) Config {
	b.Locks.Prefix, b.Election.Prefix, b.IDs.Prefix, b.IDs.Max = a.Locks.Prefix, a.Election.Prefix, a.IDs.Prefix, a.IDs.Max
	return b
}

func newFxLocker(p fxParams) (*Locker, error) {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	l, err := NewLocker(p.Etcd, p.Config.Get(), WithLogger(log))
	if err != nil {
		return nil, err
	}
	follow(p, log, "locker", func(cfg Config, first bool) error {
		if first {
			l.configure(cfg)
		} else {
			l.cfg.set(cfg)
		}
		return nil
	}, l.Close)
	return l, nil
}

func newFxElector(p fxParams) (*Elector, error) {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	el, err := NewElector(p.Etcd, p.Config.Get(), WithLogger(log))
	if err != nil {
		return nil, err
	}
	follow(p, log, "elector", func(cfg Config, first bool) error {
		if first {
			el.configure(cfg)
		} else {
			el.cfg.set(cfg)
		}
		return nil
	}, el.Close)
	return el, nil
}

type fxIDParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Etcd      *clientv3.Client `name:"etcd"`
	Config    *config.Value[Config]
	Logger    *zap.Logger
	Identity  lifecycle.Identity
}

func newFxIDAllocator(p fxIDParams) (*IDAllocator, error) {
	log := clog.ModuleLogger(p.Logger, ModuleName)
	a, err := NewIDAllocator(p.Etcd, p.Identity.Service, p.Config.Get(), WithLogger(log), WithHolder(p.Identity.Instance))
	if err != nil {
		return nil, err
	}
	follow(fxParams{Lifecycle: p.Lifecycle, Etcd: p.Etcd, Config: p.Config, Logger: p.Logger}, log, "instance ID allocator", func(cfg Config, first bool) error {
		if first {
			return a.configure(cfg)
		}
		a.cfg.set(cfg)
		return nil
	}, a.Close)
	return a, nil
}
