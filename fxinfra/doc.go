// Package fxinfra composes im-infra's modules into one fx option, so a
// service main is
//
//	fx.New(fxinfra.Module, myservice.Module).Run()
//
// It wires lifecycle (environment, identity, readiness, health, errors),
// config (the app's Values and their health check), clog (bootstrap logger
// at once, production config at start, fx's own event log), coord (etcd
// client, config source, center, registry, locks) and the admin HTTP server.
// Start order follows the dependency graph: the etcd client probes before
// any config is loaded; config is loaded before the logger is swapped; the
// admin server listens once everything else has started. The drain is the
// first stop step (lifecycle.DrainFirst). fx builds only what something
// asks for, so a service pays only for the components it uses.
//
// Operators see the start and the stop at info level, one line per step
// with its timing; a failed start is one error line naming the component
// and the field, and the process exits 1.
package fxinfra
