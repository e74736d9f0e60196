package lifecycle

import (
	"os"

	"go.uber.org/fx"
	"go.uber.org/zap"
)

// HealthGroup is the fx value group every module's Checker joins.
const HealthGroup = "health"

// Module provides the phase-1 pieces of floor 1: the process Identity, the
// *Readiness and the health *Aggregator over the "health" value group. It
// wires neither the admin server's config nor its hooks: fxinfra owns the
// AdminOptions (from config) and calls RegisterAdmin.
var Module = fx.Module("lifecycle",
	fx.Provide(
		loadProcessIdentity,
		NewReadiness,
		newGroupAggregator,
	),
)

func loadProcessIdentity() (Identity, error) { return LoadIdentity(os.Args[1:], os.Getenv) }

// aggregatorParams collects the checkers of the health group. Options and
// Logger are optional so that fxinfra can supply them from config.
type aggregatorParams struct {
	fx.In

	Checkers []Checker         `group:"health"`
	Options  AggregatorOptions `optional:"true"`
	Logger   *zap.Logger       `optional:"true"`
}

func newGroupAggregator(p aggregatorParams) *Aggregator {
	opts := p.Options
	if opts.Logger == nil && p.Logger != nil {
		opts.Logger = p.Logger.Named("health")
	}
	return NewAggregator(p.Checkers, opts)
}

// AsChecker annotates constructor f, which returns a type implementing
// Checker, so that its result joins the "health" value group:
//
//	fx.Provide(lifecycle.AsChecker(newRedisChecker))
func AsChecker(f any) any {
	return fx.Annotate(f, fx.As(new(Checker)), fx.ResultTags(`group:"`+HealthGroup+`"`))
}

// RegisterAdmin ties s to lc: it listens in OnStart and shuts down in OnStop.
// fxinfra calls it once the other modules have registered their hooks, so
// the admin server starts last (probes never see a half-started service).
// OnStop runs in reverse, so it then stops first, but only after the
// EventLogger's drain delay, during which /readyz has been answering 503.
func RegisterAdmin(lc fx.Lifecycle, s *AdminServer) {
	lc.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
}
