// Package configcli is the config center's command-line tool, as a package
// so that a service can build its own copy that knows its own components:
//
//	configcli.Main(
//		configcli.ComponentOf[clog.Config]("clog"),
//		configcli.ComponentOf[myservice.Config]("myservice"),
//	)
//
// Every document goes through the component's own config type, with the
// merge the running services do (config.Parse: defaults, the global layer,
// the service's layer, strict decoding, Validate), so what the tool accepts
// the services accept. A write (init, import, set, delete, rollback) is one
// etcd transaction holding the documents and an audit record, guarded so
// that it fails if anything it was checked against changed meanwhile; it is
// then checked again. A write too large for one transaction is refused,
// never split.
//
// It connects through coord.NewClient, so endpoints, TLS and authentication
// behave as in the services. Secrets are masked in every output unless
// asked for; "enc:" values are made with encrypt and decrypted by
// config.Secret in the services. auth init sets up etcd RBAC so each service
// reads only its own and the global config.
//
// Failures are one line on stderr (a list for validation problems) and an
// exit code: 1 validation or refusal, 2 usage, 3 etcd unreachable or
// refusing the credentials.
package configcli
