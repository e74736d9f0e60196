package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

func TestIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"mysql deadlock", &mysql.MySQLError{Number: 1213}, true},
		{"mysql lock wait timeout", &mysql.MySQLError{Number: 1205}, true},
		{"mysql deadlock, wrapped", fmt.Errorf("save order: %w", &mysql.MySQLError{Number: 1213}), true},
		{"mysql duplicate", &mysql.MySQLError{Number: 1062}, false},
		{"postgres serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"postgres deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"postgres unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"record not found", gorm.ErrRecordNotFound, false},
		{"duplicated key", gorm.ErrDuplicatedKey, false},
		{"canceled", context.Canceled, false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, IsRetryable(tc.err)) })
	}
}

// TestRetryTransactionRecoversFromARealConflict makes the database abort
// a transaction (a deadlock on MariaDB, a serialization failure on
// PostgreSQL, SQLITE_BUSY on SQLite) and checks that RetryTransaction runs
// it again and that both writers' work is in.
func TestRetryTransactionRecoversFromARealConflict(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		cfg := tg.config(t)
		if tg.driver == DriverSQLite {
			cfg.Params = map[string]string{"_pragma": "busy_timeout(0)"} // fail at once instead of waiting
		}
		reader, mp := newMeter()
		d := openDB(t, cfg, WithMeterProvider(mp))
		ctx := ctxT(t, 30*time.Second)
		require.NoError(t, d.AutoMigrate(ctx, &Item{}))
		for i := 1; i <= 8; i++ {
			require.NoError(t, d.WithContext(ctx).Create(&Item{ID: uint(i), Name: fmt.Sprint("row", i)}).Error)
		}
		add := func(tx *gorm.DB, id uint) error {
			return tx.Model(&Item{}).Where("id = ?", id).Update("qty", gorm.Expr("qty + 1")).Error
		}

		var calls atomic.Int32
		opts := RetryOptions{Attempts: 3, Backoff: 50 * time.Millisecond}
		otherDone := make(chan error, 1)
		switch tg.driver {
		case DriverMySQL:
			// Two transactions lock rows 1 and 2 in opposite orders. InnoDB
			// aborts the one that changed fewer rows: ours.
			aLocked, bLocked := make(chan struct{}), make(chan struct{})
			go func() {
				otherDone <- d.Transaction(ctx, func(tx *gorm.DB) error {
					for id := uint(3); id <= 8; id++ { // heavier, so InnoDB keeps it
						if err := add(tx, id); err != nil {
							return err
						}
					}
					if err := add(tx, 1); err != nil {
						return err
					}
					close(aLocked)
					<-bLocked
					return add(tx, 2)
				})
			}()
			err := d.RetryTransaction(ctx, opts, func(tx *gorm.DB) error {
				if calls.Add(1) == 1 {
					if err := add(tx, 2); err != nil {
						return err
					}
					close(bLocked)
					<-aLocked
					time.Sleep(100 * time.Millisecond) // let the other one queue for row 2
				} else if err := add(tx, 2); err != nil {
					return err
				}
				return add(tx, 1)
			})
			require.NoError(t, err)
		case DriverPostgres:
			// Under REPEATABLE READ, updating a row that another
			// transaction changed after our snapshot fails with 40001.
			opts.TxOptions = &sql.TxOptions{Isolation: sql.LevelRepeatableRead}
			snapshot, committed := make(chan struct{}), make(chan struct{})
			go func() {
				<-snapshot
				otherDone <- d.Transaction(ctx, func(tx *gorm.DB) error {
					if err := add(tx, 1); err != nil {
						return err
					}
					return add(tx, 2)
				})
				close(committed)
			}()
			err := d.RetryTransaction(ctx, opts, func(tx *gorm.DB) error {
				var it Item
				if err := tx.First(&it, 1).Error; err != nil {
					return err
				}
				if calls.Add(1) == 1 {
					close(snapshot)
					<-committed
				}
				if err := add(tx, 1); err != nil {
					return err
				}
				return add(tx, 2)
			})
			require.NoError(t, err)
		case DriverSQLite:
			// A writer holds the database; with no busy timeout our BEGIN
			// IMMEDIATE fails with SQLITE_BUSY until it commits.
			holding := make(chan struct{})
			go func() {
				otherDone <- d.Transaction(ctx, func(tx *gorm.DB) error {
					if err := add(tx, 1); err != nil {
						return err
					}
					if err := add(tx, 2); err != nil {
						return err
					}
					close(holding)
					// Commit once our RetryTransaction has failed and is
					// backing off.
					for counterValue(t, reader, "db.transaction.retries") == 0 {
						time.Sleep(time.Millisecond)
					}
					return nil
				})
			}()
			<-holding
			err := d.RetryTransaction(ctx, opts, func(tx *gorm.DB) error {
				calls.Add(1)
				if err := add(tx, 1); err != nil {
					return err
				}
				return add(tx, 2)
			})
			require.NoError(t, err)
		}
		require.NoError(t, <-otherDone)
		var items []Item
		require.NoError(t, d.WithContext(ctx).Clauses(clause.OrderBy{Columns: []clause.OrderByColumn{{Column: clause.Column{Name: "id"}}}}).
			Where("id IN ?", []int{1, 2}).Find(&items).Error)
		require.Len(t, items, 2)
		assert.Equal(t, 2, items[0].Qty, "both writers' increments of row 1 are in")
		assert.Equal(t, 2, items[1].Qty, "both writers' increments of row 2 are in")
		assert.EqualValues(t, 1, counterValue(t, reader, "db.transaction.retries"), "one retry")
		assert.LessOrEqual(t, calls.Load(), int32(2))
	})
}

func TestRetryTransactionIsBounded(t *testing.T) {
	d := openDB(t, sqliteTarget().config(t))
	ctx := ctxT(t, 10*time.Second)
	deadlock := &mysql.MySQLError{Number: 1213, Message: "Deadlock found"}
	errOther := errors.New("not retryable")

	for _, tc := range []struct {
		name      string
		opts      RetryOptions
		err       error
		wantCalls int32
	}{
		{"retryable, default attempts", RetryOptions{Backoff: time.Millisecond}, deadlock, 3},
		{"retryable, 5 attempts", RetryOptions{Attempts: 5, Backoff: time.Millisecond}, deadlock, 5},
		{"not retryable", RetryOptions{}, errOther, 1},
		{"success", RetryOptions{}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			err := d.RetryTransaction(ctx, tc.opts, func(*gorm.DB) error {
				calls.Add(1)
				return tc.err
			})
			assert.Equal(t, tc.wantCalls, calls.Load())
			if tc.err == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.err)
			}
		})
	}

	t.Run("inside a transaction it runs once", func(t *testing.T) {
		var calls atomic.Int32
		err := d.Transaction(ctx, func(tx *gorm.DB) error {
			return d.RetryTransaction(tx.Statement.Context, RetryOptions{Backoff: time.Millisecond}, func(*gorm.DB) error {
				calls.Add(1)
				return deadlock
			})
		})
		assert.ErrorIs(t, err, deadlock)
		assert.EqualValues(t, 1, calls.Load())
	})

	t.Run("ctx ends the backoff", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := d.RetryTransaction(cctx, RetryOptions{Attempts: 100, Backoff: 10 * time.Second, MaxBackoff: 10 * time.Second}, func(*gorm.DB) error {
			return deadlock
		})
		assert.ErrorIs(t, err, deadlock)
		assert.Less(t, time.Since(start), 2*time.Second)
	})
}
