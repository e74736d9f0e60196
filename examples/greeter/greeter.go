package greeter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// Greeter greets. It reads its config through a function so that every
// call sees the current value; New gives it a fixed one, the fx module the
// live one.
type Greeter struct {
	cfg func() Config
	log *zap.Logger

	greeted atomic.Int64

	mu       sync.Mutex
	stop     context.CancelFunc
	done     chan struct{}
	reset    chan time.Duration
	lastTick atomic.Int64 // unix nanos of the last periodic greeting
}

// New returns a greeter with a fixed config, validated. log may be nil.
func New(cfg Config, log *zap.Logger) (*Greeter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newGreeter(func() Config { return cfg }, log), nil
}

func newGreeter(cfg func() Config, log *zap.Logger) *Greeter {
	if log == nil {
		log = zap.NewNop()
	}
	return &Greeter{cfg: cfg, log: log, reset: make(chan time.Duration, 1)}
}

// Greet greets name with the current message. An empty or overlong name
// is a VALIDATION error naming the field.
func (g *Greeter) Greet(name string) (string, error) {
	cfg := g.cfg()
	switch {
	case name == "":
		return "", lifecycle.ValidationError(ModuleName, "name", "must not be empty")
	case len(name) > cfg.MaxName:
		return "", lifecycle.ValidationError(ModuleName, "name", fmt.Sprintf("is %d bytes; at most %d (maxName)", len(name), cfg.MaxName))
	}
	g.greeted.Add(1)
	return cfg.Message + ", " + name, nil
}

// Greeted counts successful Greet calls.
func (g *Greeter) Greeted() int64 { return g.greeted.Load() }

// Start begins the periodic greeting; Stop ends it. Start twice does nothing.
func (g *Greeter) Start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.stop, g.done = cancel, make(chan struct{})
	go g.loop(ctx, g.cfg().Interval.Std())
}

// SetInterval changes the periodic greeting's interval at once.
func (g *Greeter) SetInterval(d time.Duration) {
	select {
	case <-g.reset: // drop a change not yet taken: the newest wins
	default:
	}
	g.reset <- d
}

// Stop ends the periodic greeting, waiting for it, or returns ctx's error.
func (g *Greeter) Stop(ctx context.Context) error {
	g.mu.Lock()
	stop, done := g.stop, g.done
	g.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return lifecycle.TimeoutError(ModuleName, "stop", ctx.Err())
	}
}

func (g *Greeter) loop(ctx context.Context, every time.Duration) {
	defer close(g.done)
	t := time.NewTimer(every)
	if every <= 0 {
		t.Stop()
	}
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-g.reset:
			every = d
			t.Stop()
			if every > 0 {
				t.Reset(every)
			}
		case <-t.C:
			g.lastTick.Store(time.Now().UnixNano())
			g.log.Info(g.cfg().Message)
			t.Reset(every)
		}
	}
}

// Name implements lifecycle.Checker.
func (g *Greeter) Name() string { return ModuleName }

// Check implements lifecycle.Checker: degraded when the periodic greeting is
// more than three intervals late (its goroutine is stuck), else healthy.
func (g *Greeter) Check(context.Context) lifecycle.Status {
	every := g.cfg().Interval.Std()
	last := g.lastTick.Load()
	details := map[string]any{"greeted": g.Greeted()}
	if every > 0 && last > 0 {
		late := time.Since(time.Unix(0, last))
		details["since_last"] = late.Round(time.Millisecond).String()
		if late > 3*every {
			return lifecycle.Status{State: lifecycle.Degraded, Message: "periodic greeting is late", Details: details}
		}
	}
	return lifecycle.Status{State: lifecycle.Healthy, Details: details}
}
