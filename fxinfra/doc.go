// Package fxinfra composes im-infra's modules into one fx option, so a
// service main is
//
//	fx.New(fxinfra.Module, myservice.Module).Run()
//
// It wires, in start order: lifecycle (identity, readiness, health), clog
// (bootstrap logger at once, production config at start, and fx's own event
// log), coord (etcd client, config source, center, registry, locks) and the
// admin HTTP server, which listens last and, after the drain delay, stops
// first. Start order follows the dependency graph: the etcd client probes
// before any config is loaded; config is loaded before the logger is
// swapped; the admin server listens once everything else has started.
package fxinfra
