package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/gochat/im-infra/lifecycle"
)

// Callers branch on the error type with errors.Is and read the details with
// errors.As; the cause stays reachable through Unwrap.
func ExampleInfraError() {
	err := fmt.Errorf("boot: %w", lifecycle.ConnectionError("cache", "connect", io.ErrUnexpectedEOF))

	fmt.Println(err)
	fmt.Println(errors.Is(err, lifecycle.ErrConnection), errors.Is(err, lifecycle.ErrConfig))
	fmt.Println(errors.Is(err, io.ErrUnexpectedEOF))

	var ie *lifecycle.InfraError
	if errors.As(err, &ie) {
		fmt.Println(ie.Component, ie.Op, ie.Type)
	}
	// Output:
	// boot: cache: connect [CONNECTION]: connection failed: unexpected EOF
	// true false
	// true
	// cache connect CONNECTION
}

// An Aggregator runs every checker in parallel under its own timeout; the
// report's state is the worst of them.
func ExampleAggregator() {
	agg := lifecycle.NewAggregator([]lifecycle.Checker{
		lifecycle.CheckerFunc("db", func(context.Context) lifecycle.Status {
			return lifecycle.Status{State: lifecycle.Healthy}
		}),
		lifecycle.CheckerFunc("coord", func(context.Context) lifecycle.Status {
			return lifecycle.Status{State: lifecycle.Degraded, Message: "etcd unreachable, serving snapshot"}
		}),
		lifecycle.CheckerFunc("cache", func(ctx context.Context) lifecycle.Status {
			<-ctx.Done() // hangs until the aggregator gives up on it
			return lifecycle.Status{State: lifecycle.Unhealthy}
		}),
	}, lifecycle.AggregatorOptions{Timeout: 50 * time.Millisecond})

	report := agg.Check(context.Background())
	fmt.Println("overall:", report.State)
	for _, name := range slices.Sorted(maps.Keys(report.Checks)) {
		s := report.Checks[name]
		fmt.Printf("%s: %s %s\n", name, s.State, s.Message)
	}
	// Output:
	// overall: unhealthy
	// cache: unhealthy check timed out after 50ms
	// coord: degraded etcd unreachable, serving snapshot
	// db: healthy
}

// Flags win over IMINFRA_* variables; flags the service defines for itself
// are left alone.
func ExampleLoadIdentity() {
	env := map[string]string{
		lifecycle.EnvService: "im-logic",
		lifecycle.EnvEnv:     "staging",
		lifecycle.EnvVersion: "v1.4.0",
	}
	args := []string{"-port", "8080", "-service", "im-repo", "-instance", "repo-0"}

	id, err := lifecycle.LoadIdentity(args, func(k string) string { return env[k] })
	fmt.Printf("%+v %v\n", id, err)

	_, err = lifecycle.LoadIdentity([]string{"-service", "im-repo", "-env", "production"}, func(string) string { return "" })
	fmt.Println(errors.Is(err, lifecycle.ErrValidation))
	fmt.Println(err)
	// Output:
	// {Service:im-repo Env:staging Instance:repo-0 Version:v1.4.0} <nil>
	// true
	// lifecycle: validate [VALIDATION] field "env": unknown env "production": want one of dev, test, staging, prod or a name listed in IMINFRA_ENVS
}
