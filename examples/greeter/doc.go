// Package greeter is a complete, small im-infra module, written the way
// every module in this repository is, for service authors to copy:
//
//   - module.go: ModuleName, Module, and an fx constructor that does no I/O,
//     registers its health checker with the aggregator and appends one
//     lifecycle hook;
//   - config.go: Config with Defaults and Validate, read through
//     config.ProvideValue (which starts and stops the Value itself) and
//     applied live through Value.Subscribe;
//   - greeter.go: the behaviour, in a plain type that works without fx;
//   - errors are *lifecycle.InfraError naming the component and the field;
//   - greeter_test.go: tests on the test kit, fxinfratest.
//
// The greeter says its configured message every interval, and on request.
// Changing /config/{env}/{service}/greeter changes both live.
package greeter
