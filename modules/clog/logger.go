package clog

import (
	"io"
	"os"
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

// The package keeps one hub (the only mutable state, behind an atomic
// pointer) and two immutable loggers on it: root for L and facade, which
// skips one more frame so the package functions report their caller.
var (
	std    = newHub(initialState(os.Getenv(lifecycle.EnvEnv)))
	root   = std.logger("", nil)
	facade = root.WithOptions(zap.AddCallerSkip(1))
)

// initialState lets the facade log before Bootstrap: console for people in
// dev (the default env, as in lifecycle.LoadIdentity), JSON elsewhere.
func initialState(env string) *state {
	raw := bootstrapCore(env == "" || env == "dev")
	return &state{raw: raw, base: raw, level: zapcore.InfoLevel, stack: zapcore.ErrorLevel}
}

// L returns the root logger. It, and every logger derived from it, follows
// Bootstrap and Apply live.
func L() *Logger { return root }

// Module returns the logger of a named part of the program. Its entries carry
// module=name, and its level is Config.Levels[name] when set, else the global
// level, following every later Apply. Loggers are cheap; keep one per
// component rather than calling Module per log line.
func Module(name string) *Logger { return std.logger(name, []Field{zap.String("module", name)}) }

// Debug logs at debug level on the root logger.
func Debug(msg string, fields ...Field) { facade.Debug(msg, fields...) }

// Info logs at info level on the root logger.
func Info(msg string, fields ...Field) { facade.Info(msg, fields...) }

// Warn logs at warn level on the root logger.
func Warn(msg string, fields ...Field) { facade.Warn(msg, fields...) }

// Error logs at error level on the root logger.
func Error(msg string, fields ...Field) { facade.Error(msg, fields...) }

// Sync flushes buffered output of the current core. Call it before exit
// (FxModule does so on stop).
func Sync() error { return std.cur.Load().base.Sync() }

// Bootstrap installs the phase-1 logger for id: console in the dev env,
// JSON elsewhere, to stderr at info, with service, env and instance on every
// line. The identity fields stay through every later Apply. Once Apply has
// installed a production core, Bootstrap only replaces the identity fields.
func Bootstrap(id lifecycle.Identity) {
	fields := []Field{
		zap.String("service", id.Service),
		zap.String("env", id.Env),
		zap.String("instance", id.Instance),
	}
	_ = std.update(func(old *state) (*state, error) {
		next := *old
		next.identity = fields
		if !old.applied {
			next.raw = bootstrapCore(id.IsDev())
		}
		next.base = next.raw.With(fields)
		return &next, nil
	})
}

// Apply validates cfg, builds its core (encoder, output, sampling) and swaps
// it in for every logger at once, with the levels of cfg. On error nothing
// changes: an invalid config is refused and the current one stays. A file
// output is opened here, so an unwritable path fails Apply rather than
// the first log line; a file left behind by the swap is closed.
func Apply(cfg Config) error { return std.apply(cfg) }

// SetLevel changes the global level until the next Apply.
func SetLevel(lvl zapcore.Level) {
	_ = std.update(func(old *state) (*state, error) {
		next := *old
		next.level = lvl
		return &next, nil
	})
}

// SetModuleLevel changes the level of one module until the next Apply,
// e.g. from an admin endpoint while chasing a bug.
func SetModuleLevel(module string, lvl zapcore.Level) {
	_ = std.update(func(old *state) (*state, error) {
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
func Level() zapcore.Level { return std.cur.Load().level }

// ModuleLevel returns the level that applies to module.
func ModuleLevel(module string) zapcore.Level { return std.cur.Load().levelFor(module) }

// ReplaceCore routes every logger to core, keeping levels and identity
// fields, until restore is called or Apply runs. It is for tests and
// examples that capture output (zaptest/observer, a buffer); core should
// enable every level, since clog filters before it.
func ReplaceCore(core zapcore.Core) (restore func()) {
	var prev *state
	_ = std.update(func(old *state) (*state, error) {
		prev = old
		next := *old
		next.raw = core
		next.base = core.With(old.identity)
		next.applied = true
		return &next, nil
	})
	return func() {
		_ = std.update(func(*state) (*state, error) {
			// A fresh copy, so cores that cached the replaced generation
			// see a new one.
			again := *prev
			return &again, nil
		})
	}
}

// logger builds a zap logger over a swapCore of h. Callers are always
// captured: whether they are printed is a property of the encoder, which
// Apply can change, while zap fixes capture when a logger is built.
func (h *hub) logger(module string, fields []Field) *Logger {
	return zap.New(newSwapCore(h, module, fields),
		zap.AddCaller(),
		zap.AddStacktrace(stackEnabler{h}),
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
			base:     raw.With(old.identity),
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
