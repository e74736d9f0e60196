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
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/modules/clog"
)

// components is every config component of im-infra this build checks
// documents against. A module's component is added here when the module
// lands: cache, db, mq and metrics are still to come, each as
// configcli.ComponentOf[<module>.Config](<module>.ModuleName).
var components = []configcli.Component{
	configcli.ComponentOf[clog.Config]("clog"),
	configcli.ComponentOf[fxinfra.AdminConfig](fxinfra.AdminComponent),
}

func main() { configcli.Main(components...) }
