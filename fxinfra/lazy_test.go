package fxinfra_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/cache"
)

// tripwire is a TCP listener that counts the connections made to it.
type tripwire struct {
	ln    net.Listener
	dials atomic.Int64
	done  chan struct{}
}

func newTripwire(t *testing.T) *tripwire {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w := &tripwire{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			w.dials.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-w.done })
	return w
}

func (w *tripwire) port() int { return w.ln.Addr().(*net.TCPAddr).Port }

// fxinfra.Module carries every module, but a service that asks for none of
// cache, db or mq builds none: with their documents pointing at a listener
// that counts connections, the app starts, serves /readyz with no cache, db
// or mq check, stops, and nothing ever dialed.
func TestModuleBuildsNoClientNobodyAsksFor(t *testing.T) {
	w := newTripwire(t)
	var agg *lifecycle.Aggregator
	app := fxinfratest.New(t,
		fxinfratest.WithConfig("cache", fmt.Sprintf(`{"addresses":["127.0.0.1:%d"]}`, w.port())),
		fxinfratest.WithConfig("db", fmt.Sprintf(`{"driver":"mysql","host":"127.0.0.1","port":%d,"user":"u","database":"d"}`, w.port())),
		fxinfratest.WithConfig("mq", fmt.Sprintf(`{"brokers":["127.0.0.1:%d"]}`, w.port())),
		fxinfratest.WithFx(fx.Populate(&agg)),
	)
	rep := agg.Check(context.Background())
	for _, name := range []string{"cache", "db", "mq"} {
		assert.NotContains(t, rep.Checks, name)
	}
	assert.Contains(t, rep.Checks, "coord")
	app.RequireStop()
	assert.Zero(t, w.dials.Load(), "no client dialed")
}

// The control: asking for cache.Cache does dial the address in its config,
// so the tripwire above would have seen a client built by mistake.
func TestTripwireSeesAClientThatIsAskedFor(t *testing.T) {
	w := newTripwire(t)
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	put(t, e, "/config/test/svc/cache", fmt.Sprintf(`{"addresses":["127.0.0.1:%d"],"dialTimeout":"500ms"}`, w.port()))
	app := fx.New(fxinfra.Module, environ(t, e), fx.NopLogger, fx.Invoke(func(cache.Cache) {}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.Error(t, app.Start(ctx), "the tripwire is not Redis")
	assert.Positive(t, w.dials.Load())
}
