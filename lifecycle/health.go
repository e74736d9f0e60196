package lifecycle

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// State is the health of one component or of the whole service.
type State string

// The three states a check can report, from best to worst.
const (
	// Healthy: the component works as configured.
	Healthy State = "healthy"
	// Degraded: the component works with reduced guarantees (for example a
	// config center that is unreachable while the last good snapshot serves).
	// A degraded service still receives traffic.
	Degraded State = "degraded"
	// Unhealthy: the component cannot do its job; /readyz answers 503.
	Unhealthy State = "unhealthy"
)

// rank orders states so the aggregate is the worst one; anything that is not
// a known state counts as Unhealthy so a typo cannot read as healthy.
func (s State) rank() int {
	switch s {
	case Healthy:
		return 0
	case Degraded:
		return 1
	default:
		return 2
	}
}

func (s State) valid() bool { return s == Healthy || s == Degraded || s == Unhealthy }

// Status is the result of one check. Details carries small, JSON-encodable,
// secret-free facts (an endpoint, a lag, a pool size) for /readyz.
type Status struct {
	State   State          `json:"status"`
	Message string         `json:"message,omitempty"`
	Details map[string]any `json:"details,omitempty"`
}

// Checker reports the health of one component. Check must honour ctx: the
// Aggregator cancels it when the per-check timeout expires and then reports
// the component Unhealthy without waiting for it.
type Checker interface {
	Name() string
	Check(ctx context.Context) Status
}

// CheckerFunc turns a function into a Checker called name.
func CheckerFunc(name string, fn func(ctx context.Context) Status) Checker {
	return checkerFunc{name: name, fn: fn}
}

type checkerFunc struct {
	name string
	fn   func(ctx context.Context) Status
}

func (c checkerFunc) Name() string                     { return c.name }
func (c checkerFunc) Check(ctx context.Context) Status { return c.fn(ctx) }

// Report is the aggregated result of one run of every checker.
type Report struct {
	// State is the worst state of all checks; Healthy when there are none.
	State State `json:"status"`
	// Checks maps each checker's name to its status.
	Checks map[string]Status `json:"checks"`
	// CheckedAt is when the run finished; a cached report keeps its time.
	CheckedAt time.Time `json:"checked_at"`
}

// AggregatorOptions tune an Aggregator. Zero values take the defaults.
type AggregatorOptions struct {
	// Timeout bounds each check. Default 2s: well under the 5s probe timeout
	// of common load balancers, so a hung dependency turns into a 503 rather
	// than a probe that never answers.
	Timeout time.Duration
	// CacheTTL is how long a report is reused. Default 1s, so a burst of
	// probes (several load balancers, a dashboard) costs one round of checks.
	// A negative value disables the cache; concurrent callers still share
	// a run in flight.
	CacheTTL time.Duration
	// Logger receives state changes and panics of checkers. Nil logs nothing.
	Logger *zap.Logger
}

// Defaults used for zero AggregatorOptions.
const (
	DefaultCheckTimeout = 2 * time.Second
	DefaultCacheTTL     = time.Second
)

func (o AggregatorOptions) withDefaults() AggregatorOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultCheckTimeout
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// Aggregator runs a set of checkers in parallel, each under its own timeout,
// and folds the results into one Report. It is safe for concurrent use.
//
// A checker that ignores its ctx cannot pile up goroutines: while its previous
// call is still running it is not called again and reports Unhealthy.
type Aggregator struct {
	opts AggregatorOptions

	mu       sync.Mutex
	checkers []*checkEntry
	names    map[string]int // base name -> how many checkers use it
	gen      uint64         // bumped by Add so a run in flight does not cache a stale set
	last     *Report
	lastAt   time.Time
	flight   *flight
}

type checkEntry struct {
	name    string
	checker Checker
	running atomic.Bool
	// prev is the state of the last run; only the run goroutine touches it,
	// and runs are serialised by Aggregator.flight.
	prev State
}

// flight is one run of all checkers that concurrent callers wait on.
type flight struct {
	done   chan struct{}
	report Report
}

// NewAggregator returns an Aggregator over checkers. Names must be unique;
// a repeated name gets a "#2", "#3" suffix so no result is lost.
func NewAggregator(checkers []Checker, opts AggregatorOptions) *Aggregator {
	a := &Aggregator{opts: opts.withDefaults(), names: map[string]int{}}
	for _, c := range checkers {
		a.Add(c)
	}
	return a
}

// Add registers a checker after construction, for components that come to
// life late. The next Check includes it. A nil checker is ignored.
func (a *Aggregator) Add(c Checker) {
	if c == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	name := c.Name()
	if name == "" {
		name = "unnamed"
	}
	a.names[name]++
	if n := a.names[name]; n > 1 {
		name += "#" + strconv.Itoa(n)
	}
	a.checkers = append(a.checkers, &checkEntry{name: name, checker: c})
	a.gen++
	a.last = nil
}

// Check returns the current report, from the cache when it is younger than
// CacheTTL. Otherwise it runs every checker in parallel; callers that arrive
// meanwhile share that run. The run is detached from ctx's cancellation so a
// caller that leaves cannot poison the report others receive; a caller whose
// ctx ends first gets an Unhealthy report that says so.
func (a *Aggregator) Check(ctx context.Context) Report {
	a.mu.Lock()
	if a.last != nil && a.opts.CacheTTL > 0 && time.Since(a.lastAt) < a.opts.CacheTTL {
		r := cloneReport(*a.last)
		a.mu.Unlock()
		return r
	}
	f := a.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		a.flight = f
		// The goroutine is owned by the flight: it ends once every check has
		// returned or timed out, which Timeout bounds.
		go a.run(context.WithoutCancel(ctx), f, slices.Clone(a.checkers), a.gen)
	}
	a.mu.Unlock()

	select {
	case <-f.done:
		return cloneReport(f.report)
	case <-ctx.Done():
		return a.abandoned(ctx.Err())
	}
}

func (a *Aggregator) run(ctx context.Context, f *flight, entries []*checkEntry, gen uint64) {
	results := make([]Status, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() { results[i] = a.runOne(ctx, e) })
	}
	wg.Wait()

	report := Report{State: Healthy, Checks: make(map[string]Status, len(entries)), CheckedAt: time.Now()}
	for i, e := range entries {
		s := results[i]
		report.Checks[e.name] = s
		if s.State.rank() > report.State.rank() {
			report.State = s.State
		}
		a.logChange(e, s)
	}

	a.mu.Lock()
	f.report = report
	if a.gen == gen {
		a.last, a.lastAt = &f.report, report.CheckedAt
	}
	a.flight = nil
	a.mu.Unlock()
	close(f.done)
}

// runOne calls one checker under its own timeout. It returns when the checker
// does or when the timeout expires, whichever is first; a late checker keeps
// its goroutine until it honours the cancelled ctx, and its result is dropped.
func (a *Aggregator) runOne(ctx context.Context, e *checkEntry) Status {
	if !e.running.CompareAndSwap(false, true) {
		return Status{State: Unhealthy, Message: "previous check has not returned yet (it ignores its context)"}
	}
	cctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	result := make(chan Status, 1) // buffered: a late checker must not block on send
	go func() {
		s := a.call(cctx, e)
		// Cleared before the result is handed over, so a caller that runs
		// the checks again right after this run is not told the checker
		// is still busy.
		e.running.Store(false)
		result <- s
	}()
	select {
	case s := <-result:
		// A checker that honours ctx returns right at the deadline with
		// its own ctx error; the timeout is the more useful report then.
		if cctx.Err() == nil {
			return s
		}
	case <-cctx.Done():
	}
	return Status{State: Unhealthy, Message: "check timed out after " + a.opts.Timeout.String()}
}

// call runs the checker and turns a panic or an invalid state into Unhealthy,
// because a broken checker must never take the process or the probe down.
func (a *Aggregator) call(ctx context.Context, e *checkEntry) (s Status) {
	defer func() {
		if p := recover(); p != nil {
			a.opts.Logger.Error("health checker panicked",
				zap.String("check", e.name), zap.Any("panic", p), zap.StackSkip("stack", 2))
			s = Status{State: Unhealthy, Message: fmt.Sprintf("check panicked: %v", p)}
		}
	}()
	s = e.checker.Check(ctx)
	if !s.State.valid() {
		msg := fmt.Sprintf("checker returned invalid state %q", s.State)
		if s.Message != "" {
			msg += ": " + s.Message
		}
		s = Status{State: Unhealthy, Message: msg, Details: s.Details}
	}
	return s
}

// logChange logs transitions only, so a probe every second does not flood
// the log while a dependency stays down.
func (a *Aggregator) logChange(e *checkEntry, s Status) {
	prev := e.prev
	e.prev = s.State
	if prev == s.State || (prev == "" && s.State == Healthy) {
		return
	}
	level := zap.InfoLevel
	if s.State != Healthy {
		level = zap.WarnLevel
	}
	a.opts.Logger.Log(level, "health check state changed",
		zap.String("check", e.name), zap.String("from", string(prev)),
		zap.String("to", string(s.State)), zap.String("message", s.Message))
}

// abandoned is the report for a caller whose ctx ended before the run did.
func (a *Aggregator) abandoned(err error) Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := Report{State: Unhealthy, Checks: make(map[string]Status, len(a.checkers)), CheckedAt: time.Now()}
	for _, e := range a.checkers {
		r.Checks[e.name] = Status{State: Unhealthy, Message: "not checked: " + err.Error()}
	}
	return r
}

// cloneReport copies the map so that callers sharing a run or the cache
// cannot change each other's report.
func cloneReport(r Report) Report {
	r.Checks = maps.Clone(r.Checks)
	return r
}
