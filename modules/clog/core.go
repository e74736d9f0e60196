package clog

import (
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// state is one immutable generation of logging configuration. Every swap
// (Apply, Bootstrap, SetLevel, ...) publishes a new *state; the pointer
// itself is the generation number: a core's cached view is current exactly
// when it was resolved from the state now published. A cached view keeps its
// state reachable, so a later state can never reuse the same address.
type state struct {
	raw      zapcore.Core  // the core built from Config or Bootstrap, without identity fields
	base     zapcore.Core  // raw (teed) with identity: what every logger writes through
	tee      zapcore.Core  // also receives every entry (clogtest); nil for none
	identity []zap.Field   // service/env/instance from the last Bootstrap
	level    zapcore.Level // global minimum level
	levels   map[string]zapcore.Level
	stack    zapcore.Level // stack traces from this level up; InvalidLevel disables them
	sink     *fileSink     // owned rotating file, nil for stdout/stderr/custom cores
	applied  bool          // raw came from Apply rather than Bootstrap
}

// withTee adds the state's tee to core.
func (s *state) withTee(core zapcore.Core) zapcore.Core {
	if s.tee == nil {
		return core
	}
	return zapcore.NewTee(core, s.tee)
}

// levelFor resolves the effective minimum level of a module ("" is the root).
func (s *state) levelFor(module string) zapcore.Level {
	if module != "" {
		if l, ok := s.levels[module]; ok {
			return l
		}
	}
	return s.level
}

// hub owns the published state of one app's logging (or of the process,
// before any app). Readers only load the pointer; writers serialise on mu
// so a read-modify-write swap never loses a concurrent one.
type hub struct {
	cur atomic.Pointer[state]
	mu  sync.Mutex
	// ref points at this hub; loggers built on the hub resolve through it.
	ref *hubRef
}

func newHub(initial *state) *hub {
	h := &hub{}
	h.cur.Store(initial)
	h.ref = &hubRef{}
	h.ref.p.Store(h)
	return h
}

// hubRef is what a logger's core follows: an app's loggers follow their
// app's hub for life; the facade's follow whichever hub is installed.
type hubRef struct{ p atomic.Pointer[hub] }

func (r *hubRef) state() *state { return r.p.Load().cur.Load() }

// update publishes the state fn derives from the current one, and closes the
// previous file sink once no new write can reach it.
func (h *hub) update(fn func(old *state) (*state, error)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.cur.Load()
	next, err := fn(old)
	if err != nil {
		return err
	}
	h.cur.Store(next)
	if old.sink != nil && old.sink != next.sink {
		// A write that checked against the old core just before the swap may
		// still land; lumberjack reopens the file for it and the runtime
		// closes that handle when it is collected, so no line is lost.
		_ = old.sink.Close()
	}
	return nil
}

// resolved is a core's view of one state: the level that applies to it and
// the state's base core with the logger's fields already encoded.
type resolved struct {
	st    *state
	level zapcore.Level
	core  zapcore.Core
}

// swapCore is the zapcore.Core behind every clog logger. It holds no output
// of its own: each call resolves the hub's current state, so a logger made
// before a swap writes through the new core after it. The hot path is two
// pointer loads and a compare; the per-module level and the encoded With
// fields are computed once per generation in resolve.
type swapCore struct {
	ref    *hubRef
	module string
	fields []zap.Field
	cache  atomic.Pointer[resolved]
}

func newSwapCore(ref *hubRef, module string, fields []zap.Field) *swapCore {
	return &swapCore{ref: ref, module: module, fields: fields}
}

// view returns the resolved view of the current state. It stays small enough
// to inline; the rebuild is out of line.
func (c *swapCore) view() *resolved {
	st := c.ref.state()
	if r := c.cache.Load(); r != nil && r.st == st {
		return r
	}
	return c.resolve(st)
}

func (c *swapCore) resolve(st *state) *resolved {
	core := st.base
	if len(c.fields) > 0 {
		core = core.With(c.fields)
	}
	r := &resolved{st: st, level: st.levelFor(c.module), core: core}
	// Racing resolvers build equivalent views; whichever is stored wins.
	c.cache.Store(r)
	return r
}

// Enabled implements zapcore.LevelEnabler.
func (c *swapCore) Enabled(lvl zapcore.Level) bool { return lvl >= c.view().level }

// Level reports the current minimum level, so zap.Logger.Level and
// zapcore.LevelOf see per-module levels.
func (c *swapCore) Level() zapcore.Level { return c.view().level }

// With returns a core that adds fields to every entry. The fields are kept
// rather than encoded into today's core so that they survive a swap; each
// generation encodes them once, on first use.
func (c *swapCore) With(fields []zap.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	all := make([]zap.Field, 0, len(c.fields)+len(fields))
	all = append(all, c.fields...)
	all = append(all, fields...)
	return newSwapCore(c.ref, c.module, all)
}

// Check adds the current core to ce when the entry's level is enabled for
// this logger's module. The entry is then written straight to that core, so
// swapCore costs nothing on the write path.
func (c *swapCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	r := c.view()
	if ent.Level < r.level {
		return ce
	}
	return r.core.Check(ent, ce)
}

// Write is only reached when a caller bypasses Check; it honours the level
// like Check does.
func (c *swapCore) Write(ent zapcore.Entry, fields []zap.Field) error {
	r := c.view()
	if ent.Level < r.level {
		return nil
	}
	return r.core.Write(ent, fields)
}

// Sync flushes the current core.
func (c *swapCore) Sync() error { return c.ref.state().base.Sync() }

// forModule is a core for module's logger with this core's fields.
func (c *swapCore) forModule(module string) *swapCore {
	fields := make([]zap.Field, 0, len(c.fields)+1)
	for _, f := range c.fields {
		if f.Key != "module" {
			fields = append(fields, f)
		}
	}
	return newSwapCore(c.ref, module, append(fields, zap.String("module", module)))
}

// stackEnabler decides stack traces from the current state, so that the
// stacktraceLevel setting reaches loggers created before a swap.
type stackEnabler struct{ ref *hubRef }

func (s stackEnabler) Enabled(lvl zapcore.Level) bool { return lvl >= s.ref.state().stack }
