package db

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"gorm.io/gorm"
)

// RetryOptions bound RetryTransaction. Zero values take the defaults.
type RetryOptions struct {
	// Attempts is how many times the transaction may run in all (default 3).
	Attempts int
	// Backoff is the first wait between attempts (default 10ms); it
	// doubles each time, with jitter, up to MaxBackoff (default 200ms).
	Backoff    time.Duration
	MaxBackoff time.Duration
	// TxOptions are passed to every BEGIN (isolation level, read-only).
	TxOptions *sql.TxOptions
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.Attempts < 1 {
		o.Attempts = 3
	}
	if o.Backoff <= 0 {
		o.Backoff = 10 * time.Millisecond
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = max(200*time.Millisecond, o.Backoff)
	}
	return o
}

// RetryTransaction is Transaction, run again (from BEGIN) when it fails
// with a deadlock or a serialization failure, which the database resolves
// by aborting one of the transactions involved. fn must therefore be safe
// to run more than once: no side effects outside the transaction.
//
// Inside another transaction (ctx carries one) it does not retry: the
// database has aborted the outer transaction too, so only the outermost
// caller can run it again. The last error is returned unchanged.
func (d *DB) RetryTransaction(ctx context.Context, opts RetryOptions, fn func(tx *gorm.DB) error) error {
	if txFrom(ctx) != nil {
		return d.Transaction(ctx, fn)
	}
	opts = opts.withDefaults()
	wait := opts.Backoff
	var txOpts []*sql.TxOptions
	if opts.TxOptions != nil {
		txOpts = append(txOpts, opts.TxOptions)
	}
	for attempt := 1; ; attempt++ {
		err := d.Transaction(ctx, fn, txOpts...)
		if err == nil || attempt >= opts.Attempts || !IsRetryable(err) {
			return err
		}
		d.in.retries.Add(ctx, 1)
		d.log.Debug("transaction aborted by the database; retrying",
			zap.Int("attempt", attempt), zap.Duration("backoff", wait), zap.Error(err))
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(wait*2, opts.MaxBackoff)
	}
}

// IsRetryable reports whether err means the database aborted a transaction
// that may succeed if run again: MySQL/MariaDB deadlock (1213) or lock wait
// timeout (1205), PostgreSQL serialization failure (40001) or deadlock
// (40P01), SQLite busy or locked.
func IsRetryable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	switch sqliteCode(err) {
	case sqliteBusyCode, sqliteLockedCode:
		return true
	}
	return false
}
