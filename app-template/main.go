// Command app-template is the smallest complete gochat service: the
// infrastructure layer and one module of its own. Copy this folder to start
// a service; replace greeter.Module with yours.
//
//	IMINFRA_SERVICE=example IMINFRA_ETCD_ENDPOINTS=http://127.0.0.1:2379 go run ./app-template
//
// Everything it needs to know before etcd answers comes from flags and
// IMINFRA_* variables (identity, etcd endpoints, admin address, snapshot
// path); everything else comes from the config center. A start that fails
// prints one error line naming the component and the field, and exits 1.
package main

import (
	"go.uber.org/fx"

	"github.com/gochat/im-infra/examples/greeter"
	"github.com/gochat/im-infra/fxinfra"
)

func main() {
	fx.New(
		fxinfra.Module,
		greeter.Module,
		// A service asks for what it uses; fx builds nothing else.
		fx.Invoke(func(*greeter.Greeter) {}),
	).Run()
}
