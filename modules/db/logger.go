package db

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"

	"github.com/gochat/im-infra/modules/clog"
)

var logLevels = map[string]gormlogger.LogLevel{
	LogSilent: gormlogger.Silent,
	LogError:  gormlogger.Error,
	LogWarn:   gormlogger.Warn,
	LogInfo:   gormlogger.Info,
}

// sqlLog is the state every sqlLogger shares, so a live change of level or
// threshold reaches sessions made earlier.
type sqlLog struct {
	log   *zap.Logger
	level atomic.Int32 // gormlogger.LogLevel
	slow  atomic.Int64 // nanoseconds; 0 = off
}

func newSQLLog(log *zap.Logger, cfg Config) *sqlLog {
	s := &sqlLog{log: log}
	s.apply(cfg)
	return s
}

func (s *sqlLog) apply(cfg Config) {
	s.level.Store(int32(logLevels[cfg.LogLevel]))
	s.slow.Store(int64(cfg.SlowQueryThreshold))
}

// sqlLogger is gorm's logger.Interface on zap. gorm's own messages (the
// migrator's, for instance) go through Info, Warn and Error.
//
// Statements are logged by the instrumentation callbacks instead of Trace:
// Trace only receives the SQL after gorm's Explain has inlined the bound
// values, and values (names, emails, tokens) must never reach a log. The
// callbacks see the statement with its placeholders.
type sqlLogger struct {
	s *sqlLog
	// override is the level a session asked for with LogMode (db.Debug()
	// asks for Info); 0 follows the config.
	override gormlogger.LogLevel
}

var _ gormlogger.Interface = (*sqlLogger)(nil)

func (l *sqlLogger) levelNow() gormlogger.LogLevel {
	if l.override != 0 {
		return l.override
	}
	return gormlogger.LogLevel(l.s.level.Load())
}

// LogMode returns a logger for one session at level.
func (l *sqlLogger) LogMode(level gormlogger.LogLevel) gormlogger.Interface {
	return &sqlLogger{s: l.s, override: level}
}

// Info logs gorm's informational messages.
func (l *sqlLogger) Info(ctx context.Context, msg string, args ...any) {
	if l.levelNow() >= gormlogger.Info {
		l.s.log.Info(fmt.Sprintf(msg, args...), clog.TraceFields(ctx)...)
	}
}

// Warn logs gorm's warnings.
func (l *sqlLogger) Warn(ctx context.Context, msg string, args ...any) {
	if l.levelNow() >= gormlogger.Warn {
		l.s.log.Warn(fmt.Sprintf(msg, args...), clog.TraceFields(ctx)...)
	}
}

// Error logs gorm's errors.
func (l *sqlLogger) Error(ctx context.Context, msg string, args ...any) {
	if l.levelNow() >= gormlogger.Error {
		l.s.log.Error(fmt.Sprintf(msg, args...), clog.TraceFields(ctx)...)
	}
}

// Trace does nothing; see the type's comment.
func (l *sqlLogger) Trace(context.Context, time.Time, func() (string, int64), error) {}

// statement logs one executed statement: failures at error (except
// gorm.ErrRecordNotFound, which is an answer, not a failure), slow ones at
// warn, and every one at info when the level is info. sql is the
// statement with placeholders.
func (l *sqlLogger) statement(ctx context.Context, op string, sql *strings.Builder, rows int64, took time.Duration, err error) {
	level := l.levelNow()
	failed := err != nil && !errors.Is(err, gorm.ErrRecordNotFound)
	slow := time.Duration(l.s.slow.Load())
	switch {
	case failed && level >= gormlogger.Error:
		l.s.log.Error("sql failed", l.fields(ctx, op, sql, rows, took, zap.Error(err))...)
	case slow > 0 && took >= slow && level >= gormlogger.Warn:
		l.s.log.Warn("slow sql", l.fields(ctx, op, sql, rows, took, zap.Duration("threshold", slow))...)
	case level >= gormlogger.Info:
		l.s.log.Info("sql", l.fields(ctx, op, sql, rows, took)...)
	}
}

func (l *sqlLogger) fields(ctx context.Context, op string, sql *strings.Builder, rows int64, took time.Duration, extra ...zap.Field) []zap.Field {
	f := make([]zap.Field, 0, 8)
	f = append(f,
		zap.String("operation", op),
		zap.String("sql", sql.String()),
		zap.Duration("duration", took),
		zap.Int64("rows", rows),
	)
	f = append(f, extra...)
	return append(f, clog.TraceFields(ctx)...)
}

// driverLogger takes go-sql-driver/mysql's own messages (a connection that
// broke under it, for instance), which would otherwise go to stderr.
type driverLogger struct{ log *zap.Logger }

func (d driverLogger) Print(v ...any) {
	d.log.Warn("mysql driver: " + strings.TrimSpace(fmt.Sprint(v...)))
}
