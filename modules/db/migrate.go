package db

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"regexp"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// MigrateOption configures Migrate.
type MigrateOption func(*migrateOptions)

type migrateOptions struct {
	table string
}

// WithVersionTable names the table that records applied versions
// (default "goose_db_version"). Services sharing a database each need
// their own. The migration lock is per table too.
func WithVersionTable(name string) MigrateOption {
	return func(o *migrateOptions) { o.table = name }
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// Migrate applies the versioned SQL migrations in dir of fsys that the
// database has not seen, in version order, each once, each in its own
// transaction unless the file says "-- +goose NO TRANSACTION". Files are
// goose's: NNN_name.sql with "-- +goose Up" and "-- +goose Down" sections.
//
// Instances that start together are safe: Migrate holds a database lock
// from reading the applied versions until the last migration is recorded
// (MySQL/MariaDB GET_LOCK, a PostgreSQL advisory lock, a lock row in
// SQLite); the others wait for it, bounded by ctx, and then find nothing
// left to do. A failed migration stops the run; the ones before it stay
// applied.
func (d *DB) Migrate(ctx context.Context, fsys fs.FS, dir string, opts ...MigrateOption) error {
	o := migrateOptions{table: goose.DefaultTablename}
	for _, opt := range opts {
		opt(&o)
	}
	if !tableName.MatchString(o.table) {
		return invalid("versionTable", fmt.Sprintf("%q is not a table name", o.table))
	}
	src := fsys
	if dir != "" && dir != "." {
		sub, err := fs.Sub(fsys, path.Clean(dir))
		if err != nil {
			return invalidCause("migrations", fmt.Sprintf("cannot open directory %q", dir), err, nil)
		}
		src = sub
	}
	start := time.Now()
	locker, err := d.sessionLocker(o.table)
	if err != nil {
		return lifecycle.InternalError(ModuleName, "migrate", "cannot create the migration lock", err)
	}
	p, err := goose.NewProvider(d.conn.dialect, d.sql, src,
		goose.WithTableName(o.table),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(gooseLogger{d.log}),
	)
	if errors.Is(err, goose.ErrNoMigrations) {
		return invalid("migrations", fmt.Sprintf("no migration files (NNN_name.sql) in %q", dir))
	}
	if err != nil {
		return invalidCause("migrations", fmt.Sprintf("cannot read the migrations in %q", dir), err, nil)
	}
	results, err := p.Up(ctx)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		results = partial.Applied
	}
	for _, r := range results {
		d.log.Info("migration applied",
			zap.Int64("version", r.Source.Version),
			zap.String("file", path.Base(r.Source.Path)),
			zap.Duration("elapsed", r.Duration),
			zap.String("version_table", o.table))
	}
	if err != nil {
		msg := "migrations failed"
		if partial != nil && partial.Failed != nil {
			msg = fmt.Sprintf("migration %s failed; the %d before it were applied", path.Base(partial.Failed.Source.Path), len(partial.Applied))
		}
		return migrateError(ctx, "migrate", msg, err, d.conn.secrets)
	}
	version, _ := p.GetDBVersion(ctx)
	d.log.Info("migrations done",
		zap.Int("applied", len(results)),
		zap.Int64("version", version),
		zap.String("version_table", o.table),
		zap.Duration("elapsed", time.Since(start)))
	return nil
}

// withMigrationLock runs fn while this process holds the migration lock
// called name on conn.
func (d *DB) withMigrationLock(ctx context.Context, name string, fn func(conn *sql.Conn) error) (err error) {
	locker, err := d.sessionLocker(name)
	if err != nil {
		return err
	}
	conn, err := d.sql.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := locker.SessionLock(ctx, conn); err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, locker.SessionUnlock(context.WithoutCancel(ctx), conn))
	}()
	return fn(conn)
}

// sessionLocker returns the lock that serialises migrations recorded in
// table: a lock held by one connection and released with it.
func (d *DB) sessionLocker(table string) (lock.SessionLocker, error) {
	switch d.conn.driver {
	case DriverMySQL:
		return &mysqlLocker{name: mysqlLockName(d.conn.database, table)}, nil
	case DriverPostgres:
		h := fnv.New64a()
		_, _ = h.Write([]byte("im-infra/db:" + table))
		// Polled once a second (goose's granularity), for up to 10 minutes
		// or until ctx ends.
		return lock.NewPostgresSessionLocker(
			lock.WithLockID(int64(h.Sum64()>>1)),
			lock.WithLockTimeout(1, 600),
			lock.WithUnlockTimeout(1, 10))
	default:
		return newSQLiteLocker(d.sql, table+"_lock"), nil
	}
}

// mysqlLocker is a SessionLocker on GET_LOCK: a named lock owned by one
// connection. The server releases it when that connection ends, so a
// crashed instance never leaves it behind.
type mysqlLocker struct{ name string }

// mysqlLockName fits the lock name into MySQL's 64 characters.
func mysqlLockName(database, table string) string {
	name := "im-infra/db:" + database + "." + table
	if len(name) <= 64 {
		return name
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return fmt.Sprintf("%s#%x", name[:47], h.Sum64())
}

func (l *mysqlLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	for {
		// Each GET_LOCK waits up to 1s on the server; looping keeps ctx in
		// charge of the total wait.
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 1)", l.name).Scan(&got); err != nil {
			return fmt.Errorf("GET_LOCK(%q): %w", l.name, err)
		}
		if got.Valid && got.Int64 == 1 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for lock %q: %w", l.name, err)
		}
	}
}

func (l *mysqlLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", l.name).Scan(&released); err != nil {
		return fmt.Errorf("RELEASE_LOCK(%q): %w", l.name, err)
	}
	if !released.Valid || released.Int64 != 1 {
		return fmt.Errorf("RELEASE_LOCK(%q): this connection did not hold the lock", l.name)
	}
	return nil
}

// sqliteLocker is a SessionLocker on a one-row table. Taking it is one
// INSERT ... ON CONFLICT DO UPDATE ... WHERE expired, which SQLite runs as a
// single-writer transaction, so exactly one caller succeeds. The row is a
// lease: a heartbeat extends it while the holder lives, and a holder that
// crashed loses it after sqliteLease.
type sqliteLocker struct {
	db    *sql.DB
	table string
	owner string

	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}
}

const (
	sqliteLease     = 30 * time.Second
	sqliteHeartbeat = 5 * time.Second
	sqlitePoll      = 50 * time.Millisecond
)

func newSQLiteLocker(db *sql.DB, table string) *sqliteLocker {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &sqliteLocker{db: db, table: table, owner: hex.EncodeToString(b[:])}
}

func (l *sqliteLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+l.table+
		` (id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL, expires_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create lock table %s: %w", l.table, err)
	}
	take := `INSERT INTO ` + l.table + ` (id, owner, expires_at) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE ` + l.table + `.expires_at < ?`
	for {
		now := time.Now()
		res, err := conn.ExecContext(ctx, take, l.owner, now.Add(sqliteLease).UnixMilli(), now.UnixMilli())
		if err != nil {
			return fmt.Errorf("take lock %s: %w", l.table, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			l.startHeartbeat()
			return nil
		}
		t := time.NewTimer(sqlitePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for lock %s: %w", l.table, ctx.Err())
		case <-t.C:
		}
	}
}

// startHeartbeat extends the lease from another connection while the
// holder's connection is busy migrating.
func (l *sqliteLocker) startHeartbeat() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t := time.NewTicker(sqliteHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), sqliteHeartbeat)
				_, _ = l.db.ExecContext(ctx, `UPDATE `+l.table+` SET expires_at = ? WHERE id = 1 AND owner = ?`,
					time.Now().Add(sqliteLease).UnixMilli(), l.owner)
				cancel()
			}
		}
	}(l.stop, l.done)
}

func (l *sqliteLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	l.mu.Lock()
	stop, done := l.stop, l.done
	l.stop, l.done = nil, nil
	l.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	res, err := conn.ExecContext(ctx, `DELETE FROM `+l.table+` WHERE id = 1 AND owner = ?`, l.owner)
	if err != nil {
		return fmt.Errorf("release lock %s: %w", l.table, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("release lock %s: the lease had expired and was taken over", l.table)
	}
	return nil
}

// gooseLogger sends goose's own messages to the module's logger at debug;
// Migrate logs each applied migration itself.
type gooseLogger struct{ log *zap.Logger }

func (g gooseLogger) Printf(format string, v ...any) { g.log.Debug(fmt.Sprintf(format, v...)) }
func (g gooseLogger) Fatalf(format string, v ...any) { g.log.Error(fmt.Sprintf(format, v...)) }
