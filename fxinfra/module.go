package fxinfra

import (
	"os"
	"path/filepath"

	"go.uber.org/fx"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/cache"
	"github.com/gochat/im-infra/modules/clog"
	"github.com/gochat/im-infra/modules/coord"
	"github.com/gochat/im-infra/modules/db"
	"github.com/gochat/im-infra/modules/metrics"
	"github.com/gochat/im-infra/modules/mq"
)

// ModuleName names fxinfra's own lines in the log.
const ModuleName = "fxinfra"

// EnvSnapshot names the last-known-good config file. Default:
// {user cache dir}/im-infra/{env}/{service}.json (on Linux
// ~/.cache/im-infra/{env}/{service}.json).
const EnvSnapshot = "IMINFRA_CONFIG_SNAPSHOT"

// Module is the whole infrastructure layer. It is an fx.Options, not an
// fx.Module, because fx's event logger can only be set at the app's root,
// and so can the decoration of fx.Lifecycle that makes the drain the first
// stop step whatever order hooks were registered in (lifecycle.DrainFirst).
// The admin server's hooks are registered by a root-level invoke, which fx
// runs after every fx.Module's, so that it listens last.
//
// fx builds only what something asks for: a service that never asks for a
// cache starts no Redis client, needs no Redis config and shows no cache
// health check.
var Module = fx.Options(
	fx.WithLogger(newEventLogger),
	fx.Decorate(lifecycle.DrainFirst),
	lifecycle.Module,
	config.Module,
	clog.Module,
	coord.Module,
	cache.Module,
	db.Module,
	mq.Module,
	metrics.Module,
	fx.Provide(newSnapshot, newEventLogState),
	adminModule,
	fx.Invoke(useAppLogger, registerAdmin),
)

// newSnapshot keeps the snapshot for the etcd the process is pointed at: a
// file written for other endpoints (an earlier run against another
// cluster) is not booted from.
func newSnapshot(id lifecycle.Identity, env lifecycle.Environ) *config.Snapshot {
	source := "etcd " + env.Env(coord.EnvEndpoints)
	if p := env.Env(EnvSnapshot); p != "" {
		return config.NewSnapshot(p, source)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return config.NewSnapshot(filepath.Join(dir, "im-infra", id.Env, id.Service+".json"), source)
}
