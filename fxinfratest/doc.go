// Package fxinfratest is the one-line test kit for services and modules
// built on fxinfra:
//
//	app := fxinfratest.New(t, fxinfratest.WithFx(orders.Module, fx.Populate(&svc)))
//	app.Put(t, "orders", `{"batch":50}`) // returns once the app applied it
//
// New starts fxinfra.Module as an fxtest app on a fresh embedded etcd (or
// the real one IMINFRA_TEST_ETCD_ENDPOINTS names), supplies the identity
// (service "svc", env "test") and the bootstrap settings through the app's
// own lifecycle.Environ rather than the process environment, so tests can
// run in parallel, keeps the config snapshot in t.TempDir(), puts the admin
// server on a free loopback port, tees everything the app logs into
// App.Logs, and stops the app when the test ends.
//
// Modules add an Option for their server: WithRedis (cache), WithDB (db),
// WithKafka (mq). Each starts the devstack server, or uses the real one its
// IMINFRA_TEST_* variable names, and seeds the component's config.
package fxinfratest
