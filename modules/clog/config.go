package clog

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Config is the production logging configuration, read from the config
// center under component "clog" and applied live with Apply. Empty strings
// mean the default, so a zero Config is usable.
type Config struct {
	// Level is the global minimum level: debug, info, warn or error. Default info.
	Level string `json:"level"`
	// Format is json (one object per line, for collectors) or console (for
	// people). Default json; Bootstrap uses console in the dev env.
	Format string `json:"format"`
	// Output is stdout, stderr or file. Default stderr, which keeps stdout
	// free for programs that print results.
	Output string `json:"output"`
	// File configures the rotating file used when Output is file.
	File FileConfig `json:"file"`
	// Levels overrides Level per module (the name given to Module), e.g.
	// {"cache": "debug"}. Modules not listed follow Level.
	Levels map[string]string `json:"levels,omitempty"`
	// Caller adds the file:line of the call. Default true. Callers are
	// captured either way so the setting can change live; false only keeps
	// them out of the output.
	Caller bool `json:"caller"`
	// StacktraceLevel adds a stack trace to entries at or above it: debug,
	// info, warn, error or off. Default error.
	StacktraceLevel string `json:"stacktraceLevel"`
	// Sampling caps repeated messages; nil or all zero disables it.
	Sampling *SamplingConfig `json:"sampling,omitempty"`
}

// FileConfig is a size-rotated log file (gopkg.in/natefinch/lumberjack.v2).
type FileConfig struct {
	// Path of the active file; rotated files sit beside it. Required for file output.
	Path string `json:"path"`
	// MaxSizeMB rotates the file when it would grow past this size. Default 100.
	MaxSizeMB int `json:"maxSizeMB"`
	// MaxBackups is how many rotated files to keep; 0 keeps all. Default 5.
	MaxBackups int `json:"maxBackups"`
	// MaxAgeDays removes rotated files older than this; 0 keeps them. Default 7.
	MaxAgeDays int `json:"maxAgeDays"`
	// Compress gzips rotated files. Default false.
	Compress bool `json:"compress"`
}

// SamplingConfig logs, per message and level, the first Initial entries in
// each Tick and then every Thereafter-th (0: none). It protects the sink
// from a hot loop that logs the same line, at the cost of dropping some.
type SamplingConfig struct {
	Initial    int             `json:"initial"`
	Thereafter int             `json:"thereafter"`
	Tick       config.Duration `json:"tick"` // default 1s
}

// Formats and outputs accepted by Config.
const (
	FormatJSON    = "json"
	FormatConsole = "console"

	OutputStdout = "stdout"
	OutputStderr = "stderr"
	OutputFile   = "file"
)

// defaultTick is the sampling window when Tick is zero; it matches zap's
// production sampler.
const defaultTick = time.Second

// Defaults returns the configuration used when the config center has none.
func (Config) Defaults() Config {
	return Config{
		Level:  "info",
		Format: FormatJSON,
		Output: OutputStderr,
		File: FileConfig{
			MaxSizeMB:  100,
			MaxBackups: 5,
			MaxAgeDays: 7,
		},
		Caller:          true,
		StacktraceLevel: "error",
	}
}

// Validate reports the first unusable field as a VALIDATION
// *lifecycle.InfraError naming its JSON path (e.g. "levels.cache").
func (c Config) Validate() error {
	if _, err := parseLevel(c.Level); err != nil {
		return invalid("level", err.Error())
	}
	switch c.Format {
	case "", FormatJSON, FormatConsole:
	default:
		return invalid("format", fmt.Sprintf("unknown format %q: want json or console", c.Format))
	}
	switch c.Output {
	case "", OutputStdout, OutputStderr, OutputFile:
	default:
		return invalid("output", fmt.Sprintf("unknown output %q: want stdout, stderr or file", c.Output))
	}
	if c.Output == OutputFile && strings.TrimSpace(c.File.Path) == "" {
		return invalid("file.path", "required when output is file")
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"file.maxSizeMB", c.File.MaxSizeMB},
		{"file.maxBackups", c.File.MaxBackups},
		{"file.maxAgeDays", c.File.MaxAgeDays},
	} {
		if f.v < 0 {
			return invalid(f.name, fmt.Sprintf("must not be negative, got %d", f.v))
		}
	}
	// Sorted so the same document always reports the same field.
	for _, name := range slices.Sorted(maps.Keys(c.Levels)) {
		if strings.TrimSpace(name) == "" {
			return invalid("levels", "module name must not be empty")
		}
		if _, err := parseLevel(c.Levels[name]); err != nil || c.Levels[name] == "" {
			msg := fmt.Sprintf("level must be set for module %q", name)
			if err != nil {
				msg = err.Error()
			}
			return invalid("levels."+name, msg)
		}
	}
	if _, err := parseStackLevel(c.StacktraceLevel); err != nil {
		return invalid("stacktraceLevel", err.Error())
	}
	if s := c.Sampling; s != nil {
		switch {
		case s.Initial < 0:
			return invalid("sampling.initial", fmt.Sprintf("must not be negative, got %d", s.Initial))
		case s.Thereafter < 0:
			return invalid("sampling.thereafter", fmt.Sprintf("must not be negative, got %d", s.Thereafter))
		case s.Tick < 0:
			return invalid("sampling.tick", fmt.Sprintf("must not be negative, got %s", s.Tick))
		}
	}
	return nil
}

func invalid(field, msg string) error { return lifecycle.ValidationError("clog", field, msg) }

// parseLevel accepts the four levels a service should log at; "" is info.
func parseLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return zapcore.InfoLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("unknown level %q: want debug, info, warn or error", s)
}

// parseStackLevel is parseLevel plus "off"; "" is error.
func parseStackLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return zapcore.ErrorLevel, nil
	case "off", "none":
		return zapcore.InvalidLevel, nil
	}
	l, err := parseLevel(s)
	if err != nil {
		return 0, fmt.Errorf("unknown level %q: want debug, info, warn, error or off", s)
	}
	return l, nil
}

// on reports whether the sampler should wrap the core.
func (s *SamplingConfig) on() bool { return s != nil && (s.Initial > 0 || s.Thereafter > 0) }
