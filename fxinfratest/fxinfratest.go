package fxinfratest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog/clogtest"
	"github.com/gochat/im-infra/modules/coord"
)

// EnvEtcdEndpoints names a real etcd to test against instead of a fresh
// embedded one; each app then uses a service name of its own.
const EnvEtcdEndpoints = "IMINFRA_TEST_ETCD_ENDPOINTS"

// Setup is what an Option configures before the app starts. Modules add
// their own Options (WithRedis, WithDB, WithKafka) on top of its methods.
type Setup struct {
	t        testing.TB
	identity lifecycle.Identity
	environ  map[string]string
	service  map[string]string // component -> service-layer document
	global   map[string]string // component -> global-layer document
	fx       []fx.Option
}

// Option configures New.
type Option func(*Setup)

// T is the test the app belongs to.
func (s *Setup) T() testing.TB { return s.t }

// Identity is the app's identity; an Option may change Service.
func (s *Setup) Identity() *lifecycle.Identity { return &s.identity }

// Config seeds the service-layer document of component before start.
func (s *Setup) Config(component, json string) { s.service[component] = json }

// GlobalConfig seeds the global-layer document of component before start.
func (s *Setup) GlobalConfig(component, json string) { s.global[component] = json }

// Setenv sets a variable in the app's own environment (lifecycle.Environ);
// the process environment is not touched, so apps can run in parallel.
func (s *Setup) Setenv(key, value string) { s.environ[key] = value }

// Fx adds fx options: the service's modules, fx.Populate, fx.Invoke.
func (s *Setup) Fx(opts ...fx.Option) { s.fx = append(s.fx, opts...) }

// Cleanup registers fn to run when the test ends, after the app stopped.
func (s *Setup) Cleanup(fn func()) { s.t.Cleanup(fn) }

// WithFx adds fx options to the app.
func WithFx(opts ...fx.Option) Option { return func(s *Setup) { s.Fx(opts...) } }

// WithConfig seeds the service-layer document of component.
func WithConfig(component, json string) Option {
	return func(s *Setup) { s.Config(component, json) }
}

// WithGlobalConfig seeds the global-layer document of component.
func WithGlobalConfig(component, json string) Option {
	return func(s *Setup) { s.GlobalConfig(component, json) }
}

// WithService names the service (default "svc").
func WithService(name string) Option { return func(s *Setup) { s.identity.Service = name } }

// WithEnv sets a variable of the app's environment.
func WithEnv(key, value string) Option { return func(s *Setup) { s.Setenv(key, value) } }

// App is a started fxtest app with fxinfra.Module.
type App struct {
	*fxtest.App
	Logs *clogtest.Logs // everything the app logs, at the levels it logs at

	t         testing.TB
	identity  lifecycle.Identity
	endpoints []string
	etcd      *devstack.Etcd // nil with a real etcd
	raw       *clientv3.Client
	values    *config.Values
	admin     *lifecycle.AdminServer
}

// New starts fxinfra.Module with the options on a fresh embedded etcd (or
// the one EnvEtcdEndpoints names), with its snapshot in t.TempDir() and its
// admin server on a free loopback port, and stops it when the test ends.
func New(t testing.TB, opts ...Option) *App {
	t.Helper()
	s := &Setup{
		t:        t,
		identity: lifecycle.Identity{Service: "svc", Env: "test", Version: "test"},
		environ:  map[string]string{},
		service:  map[string]string{fxinfra.AdminComponent: `{"addr":"127.0.0.1:0"}`},
		global:   map[string]string{},
	}
	a := &App{t: t, Logs: clogtest.NewLogs()}
	if eps := os.Getenv(EnvEtcdEndpoints); eps != "" {
		a.endpoints = strings.Split(eps, ",")
		s.identity.Service = fmt.Sprintf("svc-%d", time.Now().UnixNano()%1_000_000_000)
	} else {
		e, err := devstack.StartEtcd(devstack.EtcdOptions{})
		if err != nil {
			t.Fatalf("fxinfratest: embedded etcd: %v", err)
		}
		t.Cleanup(e.Close)
		a.etcd, a.endpoints = e, e.Endpoints()
	}
	for _, o := range opts {
		o(s)
	}
	if s.identity.Instance == "" {
		s.identity.Instance = s.identity.Service + "-1"
	}
	a.identity = s.identity

	raw, err := clientv3.New(clientv3.Config{Endpoints: a.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("fxinfratest: etcd client: %v", err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	a.raw = raw
	for component, doc := range s.global {
		a.put(config.GlobalKey(s.identity.Env, component), doc)
	}
	for component, doc := range s.service {
		a.put(config.Key(s.identity.Env, s.identity.Service, component), doc)
	}

	environ := map[string]string{
		lifecycle.EnvService:   s.identity.Service,
		lifecycle.EnvEnv:       s.identity.Env,
		lifecycle.EnvInstance:  s.identity.Instance,
		lifecycle.EnvVersion:   s.identity.Version,
		coord.EnvEndpoints:     strings.Join(a.endpoints, ","),
		coord.EnvProbeTimeout:  "2s",
		fxinfra.EnvSnapshot:    filepath.Join(t.TempDir(), "snapshot.json"),
		lifecycle.EnvExtraEnvs: os.Getenv(lifecycle.EnvExtraEnvs),
	}
	for k, v := range s.environ {
		environ[k] = v
	}
	all := []fx.Option{
		fxinfra.Module,
		fx.Replace(lifecycle.MapEnviron(environ)),
		a.Logs.Option(),
		fx.Populate(&a.values, &a.admin),
	}
	a.App = fxtest.New(t, append(all, s.fx...)...)
	a.RequireStart()
	t.Cleanup(a.RequireStop)
	return a
}

// Identity is the app's identity.
func (a *App) Identity() lifecycle.Identity { return a.identity }

// EtcdEndpoints are the endpoints of the app's etcd.
func (a *App) EtcdEndpoints() []string { return append([]string(nil), a.endpoints...) }

// Etcd is the embedded etcd, for fault tests (Stop, Restart, Disconnect);
// nil when testing against a real etcd.
func (a *App) Etcd() *devstack.Etcd { return a.etcd }

// AdminAddr is the admin server's host:port.
func (a *App) AdminAddr() string { return a.admin.Addr() }

// Key is the service-layer key of component.
func (a *App) Key(component string) string {
	return config.Key(a.identity.Env, a.identity.Service, component)
}

// Put writes the service-layer document of component and returns once the
// app's Value of that component has applied it. It fails the test when the
// document is refused, or when the app has no Value for component (nothing
// would apply it).
func (a *App) Put(t testing.TB, component, json string) {
	t.Helper()
	if err := a.TryPut(component, json); err != nil {
		t.Fatal(err)
	}
}

// TryPut is Put that returns the refusal (a CONFIG or VALIDATION
// *lifecycle.InfraError) instead of failing the test.
func (a *App) TryPut(component, json string) error {
	return a.apply(component, a.Key(component), []byte(json))
}

// PutGlobal is Put for the global layer.
func (a *App) PutGlobal(t testing.TB, component, json string) {
	t.Helper()
	if err := a.apply(component, config.GlobalKey(a.identity.Env, component), []byte(json)); err != nil {
		t.Fatal(err)
	}
}

// Delete deletes the service-layer document of component and returns once
// the app has applied the layers below.
func (a *App) Delete(t testing.TB, component string) {
	t.Helper()
	if err := a.apply(component, a.Key(component), nil); err != nil {
		t.Fatal(err)
	}
}

// apply writes (or with nil data deletes) key and waits until the app's
// Value of component has processed that revision.
func (a *App) apply(component, key string, data []byte) error {
	if _, ok := a.values.Status(component); !ok {
		return fmt.Errorf("fxinfratest: the app has no config Value for %q; nothing would apply the document", component)
	}
	var rev int64
	if data == nil {
		rev = a.delete(key)
	} else {
		rev = a.put(key, string(data))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := a.values.Status(component)
		if st.Revision >= rev {
			if r := st.Refusal; r != nil && r.Revision >= rev {
				return r.Err
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fxinfratest: %s at revision %d not applied within 5s (at %d)", key, rev, st.Revision)
		}
		time.Sleep(time.Millisecond)
	}
}

func (a *App) put(key, val string) int64 {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := a.raw.Put(ctx, key, val)
	if err != nil {
		a.t.Fatalf("fxinfratest: put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func (a *App) delete(key string) int64 {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := a.raw.Delete(ctx, key)
	if err != nil {
		a.t.Fatalf("fxinfratest: delete %s: %v", key, err)
	}
	return resp.Header.Revision
}
