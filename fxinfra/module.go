package fxinfra

import (
	"os"
	"path/filepath"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
	"github.com/gochat/im-infra/modules/coord"
)

// EnvSnapshot names the last-known-good config file. Default:
// {user cache dir}/im-infra/{env}/{service}.json.
const EnvSnapshot = "IMINFRA_CONFIG_SNAPSHOT"

// Module is the whole infrastructure layer. It is an fx.Options, not an
// fx.Module, because fx's event logger can only be set at the app's root.
var Module = fx.Options(
	fx.WithLogger(newEventLogger),
	lifecycle.Module,
	clog.FxModule,
	coord.Module,
	fx.Provide(newSnapshot),
	adminModule,
)

// newEventLogger sends fx's own events to the "fx" module logger at debug
// (levels.fx=debug shows them) and drives readiness from them.
func newEventLogger(ready *lifecycle.Readiness, _ *clog.Logger) fxevent.Logger {
	return lifecycle.EventLogger(clog.FxEventLogger(clog.Module("fx")), ready)
}

func newSnapshot(id lifecycle.Identity) *config.Snapshot {
	if p := os.Getenv(EnvSnapshot); p != "" {
		return config.NewSnapshot(p)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return config.NewSnapshot(filepath.Join(dir, "im-infra", id.Env, id.Service+".json"))
}
