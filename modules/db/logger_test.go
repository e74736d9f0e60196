package db

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"gorm.io/gorm"

	"github.com/gochat/im-infra/config"
)

// secretValue is a bound value that must never reach a log line.
const secretValue = "v4lu3-s3cret@example.com"

// allText flattens every observed line, message and fields, for "never
// appears" checks.
func allText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&b, "%s %s %v\n", e.Level, e.Message, e.ContextMap())
	}
	return b.String()
}

// takeMsg removes every observed line and returns those with message msg.
func takeMsg(logs *observer.ObservedLogs, msg string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.TakeAll() {
		if e.Message == msg {
			out = append(out, e)
		}
	}
	return out
}

// takeLevel removes every observed line and returns those at level.
func takeLevel(logs *observer.ObservedLogs, level zapcore.Level) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.TakeAll() {
		if e.Level == level {
			out = append(out, e)
		}
	}
	return out
}

func TestSQLLogging(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		d := openDB(t, tg.config(t))
		ctx := ctxT(t, 20*time.Second)
		require.NoError(t, d.AutoMigrate(ctx, &Item{}))
		for i := range 3 {
			require.NoError(t, d.WithContext(ctx).Create(&Item{Name: fmt.Sprint(secretValue, i)}).Error)
		}
		d.logs.TakeAll()

		t.Run("fast statements are not logged at warn", func(t *testing.T) {
			var it Item
			require.NoError(t, d.WithContext(ctx).Where("name = ?", secretValue+"0").First(&it).Error)
			assert.Empty(t, d.logs.TakeAll())
		})

		t.Run("slow statements at warn with duration and rows", func(t *testing.T) {
			cfg := d.Config()
			cfg.SlowQueryThreshold = config.Duration(time.Nanosecond)
			require.NoError(t, d.Apply(cfg)) // live
			res := d.WithContext(ctx).Model(&Item{}).Where("name <> ?", secretValue).Update("qty", 5)
			require.NoError(t, res.Error)
			cfg.SlowQueryThreshold = config.Duration(DefaultSlowQueryThreshold)
			require.NoError(t, d.Apply(cfg))

			slow := takeMsg(d.logs, "slow sql")
			require.Len(t, slow, 1)
			f := slow[0].ContextMap()
			assert.Equal(t, zapcore.WarnLevel, slow[0].Level)
			assert.EqualValues(t, 3, f["rows"])
			assert.Equal(t, "update", f["operation"])
			assert.Contains(t, f, "duration")
			assert.Contains(t, f["sql"], "UPDATE")
			assert.NotContains(t, f["sql"], secretValue)
			d.logs.TakeAll()
		})

		t.Run("a really slow statement", func(t *testing.T) {
			q := map[string]string{
				DriverMySQL:    "SELECT SLEEP(0.25)",
				DriverPostgres: "SELECT pg_sleep(0.25)",
				DriverSQLite:   sqliteBusy(t, 300*time.Millisecond),
			}[tg.driver]
			start := time.Now()
			require.NoError(t, d.WithContext(ctx).Exec(q).Error)
			if time.Since(start) < DefaultSlowQueryThreshold {
				t.Skip("statement was not slow on this machine")
			}
			assert.Len(t, takeMsg(d.logs, "slow sql"), 1)
		})

		t.Run("errors at error, parameterized, with the trace", func(t *testing.T) {
			sc := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
			})
			tctx := trace.ContextWithSpanContext(ctx, sc)
			err := d.WithContext(tctx).Exec("INSERT INTO no_such_table_"+d.prefix+" (name) VALUES (?)", secretValue).Error
			require.Error(t, err)
			failed := takeMsg(d.logs, "sql failed")
			require.Len(t, failed, 1)
			assert.Equal(t, zapcore.ErrorLevel, failed[0].Level)
			f := failed[0].ContextMap()
			assert.Equal(t, sc.TraceID().String(), f["trace_id"])
			assert.Equal(t, sc.SpanID().String(), f["span_id"])
			assert.Contains(t, f["sql"], "no_such_table_")
			assert.NotContains(t, f["sql"], secretValue)
			assert.Regexp(t, `VALUES \((\?|\$1)\)`, f["sql"], "the placeholder, not the value")
		})

		t.Run("record not found is not an error", func(t *testing.T) {
			err := d.WithContext(ctx).First(&Item{}, 999999).Error
			require.ErrorIs(t, err, gorm.ErrRecordNotFound)
			assert.Empty(t, takeLevel(d.logs, zapcore.ErrorLevel))
		})

		t.Run("info logs every statement; silent logs none", func(t *testing.T) {
			cfg := d.Config()
			cfg.LogLevel = LogInfo
			require.NoError(t, d.Apply(cfg))
			d.logs.TakeAll()
			var it Item
			require.NoError(t, d.WithContext(ctx).Where("name = ?", secretValue+"1").First(&it).Error)
			require.NoError(t, d.WithContext(ctx).Model(&it).Update("qty", 9).Error)
			assert.Len(t, takeMsg(d.logs, "sql"), 2)

			cfg.LogLevel = LogSilent
			require.NoError(t, d.Apply(cfg))
			d.logs.TakeAll()
			_ = d.WithContext(ctx).Exec("SELECT * FROM no_such_table_" + d.prefix).Error
			assert.Empty(t, d.logs.TakeAll())

			cfg.LogLevel = LogWarn
			require.NoError(t, d.Apply(cfg))
			// db.Debug() asks for every statement of its session.
			d.logs.TakeAll()
			require.NoError(t, d.WithContext(ctx).Debug().First(&it).Error)
			assert.Len(t, takeMsg(d.logs, "sql"), 1)
		})

		assert.NotContains(t, allText(d.everything), secretValue, "no bound value in any log line")
	})
}
