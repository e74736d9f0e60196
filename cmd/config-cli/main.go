// Command config-cli manages the im-infra config center in etcd: every
// document is checked with its component's own config type before it is
// written, every write is one transaction with its audit record, and secrets
// are masked. See configcli/README.md.
//
//	config-cli init     --env dev --service im-repo
//	config-cli import   --env dev --path configs/dev
//	config-cli get      --env dev --service im-repo clog
//	config-cli watch    --env dev --service im-repo
//	config-cli rollback --key /config/dev/im-repo/clog --to-revision 42
package main

import (
	"github.com/gochat/im-infra/configcli"
	"github.com/gochat/im-infra/examples/greeter"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/modules/cache"
	"github.com/gochat/im-infra/modules/clog"
	"github.com/gochat/im-infra/modules/coord/discovery"
	"github.com/gochat/im-infra/modules/coord/locking"
	"github.com/gochat/im-infra/modules/db"
	"github.com/gochat/im-infra/modules/metrics"
	"github.com/gochat/im-infra/modules/mq"
)

// components is every config component of im-infra this build checks
// documents against; a new module adds its own here. The greeter is the
// example service's (make run).
var components = []configcli.Component{
	configcli.ComponentOf[clog.Config](clog.ModuleName),
	configcli.ComponentOf[fxinfra.AdminConfig](fxinfra.AdminComponent),
	configcli.ComponentOf[discovery.Config](discovery.RegistryComponent),
	configcli.ComponentOf[locking.Config](locking.ModuleName),
	configcli.ComponentOf[cache.Config](cache.ModuleName),
	configcli.ComponentOf[db.Config](db.ModuleName),
	configcli.ComponentOf[mq.Config](mq.ModuleName),
	configcli.ComponentOf[metrics.Config](metrics.ModuleName),
	configcli.ComponentOf[greeter.Config](greeter.ModuleName),
}

func main() { configcli.Main(components...) }
