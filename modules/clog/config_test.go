package clog

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func TestDefaults(t *testing.T) {
	d := Config{}.Defaults()
	assert.Equal(t, Config{
		Level:           "info",
		Format:          "json",
		Output:          "stderr",
		File:            FileConfig{MaxSizeMB: 100, MaxBackups: 5, MaxAgeDays: 7},
		Caller:          true,
		StacktraceLevel: "error",
	}, d)
	require.NoError(t, d.Validate())
	require.NoError(t, Config{}.Validate(), "empty strings mean defaults")
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"all levels", func(c *Config) {
			c.Level = "debug"
			c.Levels = map[string]string{"a": "info", "b": "WARN", "c": "error"}
			c.StacktraceLevel = "off"
		}, ""},
		{"file output", func(c *Config) { c.Output = "file"; c.File.Path = "/var/log/x.log" }, ""},
		{"sampling", func(c *Config) {
			c.Sampling = &SamplingConfig{Initial: 100, Thereafter: 100, Tick: config.Duration(time.Second)}
		}, ""},
		{"bad level", func(c *Config) { c.Level = "loud" }, "level"},
		{"fatal is not a service level", func(c *Config) { c.Level = "fatal" }, "level"},
		{"bad module level", func(c *Config) { c.Levels = map[string]string{"cache": "verbose"} }, "levels.cache"},
		{"empty module level", func(c *Config) { c.Levels = map[string]string{"cache": ""} }, "levels.cache"},
		{"empty module name", func(c *Config) { c.Levels = map[string]string{"": "debug"} }, "levels"},
		{"first bad module by name", func(c *Config) { c.Levels = map[string]string{"z": "x", "a": "y"} }, "levels.a"},
		{"unknown format", func(c *Config) { c.Format = "xml" }, "format"},
		{"unknown output", func(c *Config) { c.Output = "syslog" }, "output"},
		{"file without path", func(c *Config) { c.Output = "file" }, "file.path"},
		{"file with blank path", func(c *Config) { c.Output = "file"; c.File.Path = "  " }, "file.path"},
		{"negative maxSizeMB", func(c *Config) { c.File.MaxSizeMB = -1 }, "file.maxSizeMB"},
		{"negative maxBackups", func(c *Config) { c.File.MaxBackups = -1 }, "file.maxBackups"},
		{"negative maxAgeDays", func(c *Config) { c.File.MaxAgeDays = -1 }, "file.maxAgeDays"},
		{"bad stacktrace level", func(c *Config) { c.StacktraceLevel = "always" }, "stacktraceLevel"},
		{"negative sampling initial", func(c *Config) { c.Sampling = &SamplingConfig{Initial: -1} }, "sampling.initial"},
		{"negative sampling thereafter", func(c *Config) { c.Sampling = &SamplingConfig{Thereafter: -1} }, "sampling.thereafter"},
		{"negative sampling tick", func(c *Config) { c.Sampling = &SamplingConfig{Tick: config.Duration(-time.Second)} }, "sampling.tick"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}.Defaults()
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, lifecycle.TypeValidation, ie.Type)
			assert.Equal(t, "clog", ie.Component)
			assert.Equal(t, tt.field, ie.Field)
			assert.NotEmpty(t, ie.Message)
		})
	}
}

// TestParseDocument checks the JSON shape through the config package's
// strict decoder, as the config center will read it.
func TestParseDocument(t *testing.T) {
	doc := `{
		"level": "warn",
		"format": "console",
		"output": "file",
		"file": {"path": "/tmp/x.log", "maxSizeMB": 10, "compress": true},
		"levels": {"cache": "debug"},
		"caller": false,
		"stacktraceLevel": "off",
		"sampling": {"initial": 100, "thereafter": 10, "tick": "250ms"}
	}`
	cfg, err := config.Parse[Config]("clog", config.Layer{Key: "k", Data: []byte(doc)})
	require.NoError(t, err)
	assert.Equal(t, Config{
		Level:           "warn",
		Format:          "console",
		Output:          "file",
		File:            FileConfig{Path: "/tmp/x.log", MaxSizeMB: 10, MaxBackups: 5, MaxAgeDays: 7, Compress: true},
		Levels:          map[string]string{"cache": "debug"},
		Caller:          false,
		StacktraceLevel: "off",
		Sampling:        &SamplingConfig{Initial: 100, Thereafter: 10, Tick: config.Duration(250 * time.Millisecond)},
	}, cfg)

	_, err = config.Parse[Config]("clog", config.Layer{Key: "k", Data: []byte(`{"levels":{"cache":"loud"}}`)})
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "levels.cache", ie.Field)
}
