package clog

import (
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/lifecycle"
)

// Logger is zap's logger: clog adds no wrapper, so anything that takes a
// *zap.Logger takes a clog logger.
type Logger = zap.Logger

// Field is zap's structured field.
type Field = zap.Field

// Each fx app has its own hub (its logging state); the package facade (L,
// For, Info, Apply, ...) follows the hub installed last by an app that is
// still alive, or the process's own hub before any app. facadeRef is the
// only package-level mutable state, as the design asks for a facade.
var (
	processHub = newHub(initialState(os.Getenv(lifecycle.EnvEnv)))
	facadeRef  = newFacadeRef(processHub)
	root       = newLogger(facadeRef, "", nil)
	facade     = root.WithOptions(zap.AddCallerSkip(1))

	installMu sync.Mutex
	installed []*hub // app hubs in install order; the last one is the facade's
)

func newFacadeRef(h *hub) *hubRef {
	r := &hubRef{}
	r.p.Store(h)
	return r
}

// facadeHub is the hub the package functions act on.
func facadeHub() *hub { return facadeRef.p.Load() }

// install makes h the facade's hub until uninstall.
func install(h *hub) {
	installMu.Lock()
	defer installMu.Unlock()
	installed = append(installed, h)
	facadeRef.p.Store(h)
}

// uninstall removes h; the facade returns to the last app still installed,
// or to the process hub.
func uninstall(h *hub) {
	installMu.Lock()
	defer installMu.Unlock()
	installed = slices.DeleteFunc(installed, func(x *hub) bool { return x == h })
	next := processHub
	if n := len(installed); n > 0 {
		next = installed[n-1]
	}
	facadeRef.p.Store(next)
}

// initialState lets the facade log before Bootstrap: console for people in
// dev (the default env, as in lifecycle.LoadIdentity), JSON elsewhere.
func initialState(env string) *state {
	raw := bootstrapCore(env == "" || env == "dev")
	return &state{raw: raw, base: raw, level: zapcore.InfoLevel, stack: zapcore.ErrorLevel}
}

// L returns the facade's root logger. It, and every logger derived from it,
// follows the installed app's logging live.
func L() *Logger { return root }

// For returns the facade's logger of a named part of the program:
// ModuleLogger(L(), name).
func For(name string) *Logger { return ModuleLogger(root, name) }

// ModuleLogger returns the logger of a named part of the program, derived
// from parent (an app's logger, or L()). Its entries carry module=name, and
// its level is Config.Levels[name] when set, else the global level,
// following every later Apply of parent's app. Loggers are cheap; keep one
// per component rather than calling ModuleLogger per log line. A parent
// that is not a clog logger (zap.NewNop, a test observer) gets the module
// field only.
func ModuleLogger(parent *Logger, name string) *Logger {
	return parent.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		if sc, ok := c.(*swapCore); ok {
			return sc.forModule(name)
		}
		return c.With([]Field{zap.String("module", name)})
	}))
}

// Debug logs at debug level on the root logger.
func Debug(msg string, fields ...Field) { facade.Debug(msg, fields...) }

// Info logs at info level on the root logger.
func Info(msg string, fields ...Field) { facade.Info(msg, fields...) }

// Warn logs at warn level on the root logger.
func Warn(msg string, fields ...Field) { facade.Warn(msg, fields...) }

// Error logs at error level on the root logger.
func Error(msg string, fields ...Field) { facade.Error(msg, fields...) }

// Sync flushes buffered output of the facade's current core. Call it before
// exit (Module does so for its app on stop).
func Sync() error { return facadeHub().cur.Load().base.Sync() }

// Bootstrap installs the phase-1 logger for id: console in the dev env,
// JSON elsewhere, to stderr at info, with service, env and instance on every
// line. The identity fields stay through every later Apply. Once Apply has
// installed a production core, Bootstrap only replaces the identity fields.
func Bootstrap(id lifecycle.Identity) { facadeHub().bootstrap(id) }

func (h *hub) bootstrap(id lifecycle.Identity) {
	fields := []Field{
		zap.String("service", id.Service),
		zap.String("env", id.Env),
		zap.String("instance", id.Instance),
	}
	_ = h.update(func(old *state) (*state, error) {
		next := *old
		next.identity = fields
		if !old.applied {
			next.raw = bootstrapCore(id.IsDev())
		}
		next.base = next.withTee(next.raw).With(fields)
		return &next, nil
	})
}

// Apply validates cfg, builds its core (encoder, output, sampling) and swaps
// it in for every logger at once, with the levels of cfg. On error nothing
// changes: an invalid config is refused and the current one stays. A file
// output is opened here, so an unwritable path fails Apply rather than
// the first log line; a file left behind by the swap is closed.
func Apply(cfg Config) error { return facadeHub().apply(cfg) }

// SetLevel changes the global level until the next Apply.
func SetLevel(lvl zapcore.Level) {
	_ = facadeHub().update(func(old *state) (*state, error) {
		next := *old
		next.level = lvl
		return &next, nil
	})
}

// SetModuleLevel changes the level of one module until the next Apply,
// e.g. from an admin endpoint while chasing a bug.
func SetModuleLevel(module string, lvl zapcore.Level) {
	_ = facadeHub().update(func(old *state) (*state, error) {
		next := *old
		next.levels = make(map[string]zapcore.Level, len(old.levels)+1)
		for k, v := range old.levels {
			next.levels[k] = v
		}
		next.levels[module] = lvl
		return &next, nil
	})
}

// Level returns the global level.
func Level() zapcore.Level { return facadeHub().cur.Load().level }

// ModuleLevel returns the level that applies to module.
func ModuleLevel(module string) zapcore.Level { return facadeHub().cur.Load().levelFor(module) }

// ReplaceCore routes every logger to core, keeping levels and identity
// fields, until restore is called or Apply runs. It is for tests and
// examples that capture output (zaptest/observer, a buffer); core should
// enable every level, since clog filters before it.
func ReplaceCore(core zapcore.Core) (restore func()) {
	h := facadeHub()
	var prev *state
	_ = h.update(func(old *state) (*state, error) {
		prev = old
		next := *old
		next.raw = core
		next.base = old.withTee(core).With(old.identity)
		next.applied = true
		return &next, nil
	})
	return func() {
		_ = h.update(func(*state) (*state, error) {
			// A fresh copy, so cores that cached the replaced generation
			// see a new one.
			again := *prev
			return &again, nil
		})
	}
}

// newLogger builds a zap logger over a swapCore following ref. Callers are
// always captured: whether they are printed is a property of the encoder,
// which Apply can change, while zap fixes capture when a logger is built.
func newLogger(ref *hubRef, module string, fields []Field) *Logger {
	return zap.New(newSwapCore(ref, module, fields),
		zap.AddCaller(),
		zap.AddStacktrace(stackEnabler{ref}),
	)
}

func (h *hub) apply(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	lvl, _ := parseLevel(cfg.Level)
	stack, _ := parseStackLevel(cfg.StacktraceLevel)
	levels := make(map[string]zapcore.Level, len(cfg.Levels))
	for name, s := range cfg.Levels {
		levels[name], _ = parseLevel(s)
	}
	return h.update(func(old *state) (*state, error) {
		raw, sink, err := buildCore(cfg, old.sink)
		if err != nil {
			return nil, err
		}
		return &state{
			raw:      raw,
			base:     old.withTee(raw).With(old.identity),
			tee:      old.tee,
			identity: old.identity,
			level:    lvl,
			levels:   levels,
			stack:    stack,
			sink:     sink,
			applied:  true,
		}, nil
	})
}

// buildCore returns the core for cfg. It reuses the current file sink when
// the file settings are unchanged, so a level change does not reopen the file
// or run two rotators on it.
func buildCore(cfg Config, current *fileSink) (zapcore.Core, *fileSink, error) {
	var (
		ws   zapcore.WriteSyncer
		sink *fileSink
	)
	switch cfg.Output {
	case OutputStdout:
		ws = stdStream(os.Stdout)
	case OutputFile:
		if current != nil && current.cfg == cfg.File {
			sink = current
		} else {
			var err error
			if sink, err = openFileSink(cfg.File); err != nil {
				return nil, nil, err
			}
		}
		ws = zapcore.AddSync(sink)
	default:
		ws = stdStream(os.Stderr)
	}
	// The core passes every level: the swapCore in front of it decides,
	// per module, what reaches it.
	core := zapcore.NewCore(newEncoder(cfg.Format, cfg.Caller), ws, zapcore.DebugLevel)
	if s := cfg.Sampling; s.on() {
		tick := s.Tick.Std()
		if tick == 0 {
			tick = defaultTick
		}
		core = zapcore.NewSamplerWithOptions(core, tick, s.Initial, s.Thereafter)
	}
	return core, sink, nil
}

func bootstrapCore(dev bool) zapcore.Core {
	format := FormatJSON
	if dev {
		format = FormatConsole
	}
	return zapcore.NewCore(newEncoder(format, true), stdStream(os.Stderr), zapcore.DebugLevel)
}

// encoderConfig is what clog prints: RFC 3339 times with nanoseconds,
// durations as "1.5s", short callers; lowercase levels in JSON for
// collectors, capitals in console for eyes.
func encoderConfig(format string, caller bool) zapcore.EncoderConfig {
	ec := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      "caller",
		FunctionKey:    zapcore.OmitKey,
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.RFC3339NanoTimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
	}
	if format == FormatConsole {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		ec.EncodeTime = zapcore.TimeEncoderOfLayout(time.RFC3339Nano)
	}
	if !caller {
		ec.CallerKey = zapcore.OmitKey
	}
	return ec
}

func newEncoder(format string, caller bool) zapcore.Encoder {
	if format == FormatConsole {
		return zapcore.NewConsoleEncoder(encoderConfig(format, caller))
	}
	return zapcore.NewJSONEncoder(encoderConfig(format, caller))
}

// stdStream writes to stdout or stderr. Their Sync is skipped: the writes
// are unbuffered, and fsync on a terminal or pipe fails with EINVAL, which
// would make every Sync at exit report an error.
func stdStream(f *os.File) zapcore.WriteSyncer {
	return zapcore.Lock(zapcore.AddSync(struct{ io.Writer }{f}))
}

// NewBootstrap returns a standalone phase-1 logger for id (console in dev,
// JSON elsewhere, to stderr at info, with service, env and instance on
// every line). It belongs to no app and never changes: it is for code that
// must log before, or without, an app's logger, such as a start-up failure.
func NewBootstrap(id lifecycle.Identity) *Logger {
	h := newHub(initialState(id.Env))
	h.bootstrap(id)
	return newLogger(h.ref, "", nil)
}
