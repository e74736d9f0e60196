// Package lifecycle is floor 1 of im-infra: what every service needs before
// any infrastructure is reachable, and what decides whether it gets traffic.
//
// # What it holds
//
//   - Identity: service, env, instance and version of the process, read once
//     from flags then IMINFRA_* variables (LoadIdentity) and validated.
//   - InfraError: the one error type every im-infra module returns for an
//     infrastructure failure, classified by ErrorType (CONFIG, CONNECTION,
//     TIMEOUT, VALIDATION, INTERNAL) and matched with errors.Is against the
//     sentinels ErrConfig, ErrConnection, ErrTimeout, ErrValidation and
//     ErrInternal.
//   - Checker, Status, Aggregator: each component's constructor registers its
//     Checker with Aggregator.Add (never an fx value group, which would make
//     fx build every component); the Aggregator runs them in parallel and
//     reports the worst state.
//   - Environ: flags, then environment variables: where bootstrap settings
//     come from, replaceable per app in tests.
//   - ErrorHandler: counts InfraErrors as infra_errors_total{type,component}.
//   - Readiness and EventLogger: whether the service should receive traffic,
//     driven by fx's own lifecycle events.
//   - AdminServer: the operational HTTP port with /healthz, /readyz, optional
//     /debug/pprof/ and a slot for /metrics.
//
// # Why it is built this way
//
// Liveness and readiness are kept apart on purpose. /healthz only proves that
// the process serves HTTP, so an orchestrator never restarts a process because
// a database is down. /readyz says whether to route traffic here: not before
// every OnStart hook has run, not once shutdown has begun, and not while a
// check is unhealthy. Degraded (for example, config served from a snapshot
// while etcd is unreachable) still takes traffic.
//
// fx has no callback that runs after the app has started, but it reports
// that as an event: EventLogger turns fx's events into Readiness changes.
// The drain, during which /readyz answers 503 so load balancers notice
// before any listener closes, is a real stop step bounded by the stop ctx;
// DrainFirst makes it the first one whatever order hooks were registered in.
//
// The behaviour lives in plain constructors (NewAggregator, NewReadiness,
// NewAdminServer) that work and are tested without fx; module.go only wires
// them.
//
// # How it fails
//
//   - A checker that hangs is cancelled after AggregatorOptions.Timeout and
//     reported Unhealthy ("check timed out after 2s"); the report does not
//     wait for it. While its goroutine has not returned, the checker is not
//     called again, so a checker that ignores its ctx costs one goroutine,
//     not one per probe.
//   - A checker that panics is reported Unhealthy with the panic value and
//     logged with its stack; the process keeps running.
//   - A caller of Aggregator.Check whose ctx ends first gets an Unhealthy
//     report saying the checks were not waited for; the run itself continues
//     for the others.
//   - AdminServer.Start returns a CONNECTION *InfraError naming the address
//     when it cannot bind; Stop returns a TIMEOUT *InfraError and closes open
//     connections when its ctx ends before in-flight requests finish.
//   - LoadIdentity returns a VALIDATION *InfraError whose Field names the bad
//     value ("service", "env", "instance").
//
// Errors never carry secrets: messages name components, operations, fields
// and addresses, not passwords, tokens or DSNs.
package lifecycle
