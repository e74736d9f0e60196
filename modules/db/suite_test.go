package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gochat/im-infra/lifecycle"
)

// The suite below runs unchanged on MariaDB, PostgreSQL and SQLite.

func TestCRUD(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		d := openDB(t, tg.config(t))
		ctx := ctxT(t, 20*time.Second)
		require.NoError(t, d.AutoMigrate(ctx, &Item{}))

		it := Item{Name: "apple", Qty: 3}
		require.NoError(t, d.WithContext(ctx).Create(&it).Error)
		require.NotZero(t, it.ID)

		var got Item
		require.NoError(t, d.WithContext(ctx).First(&got, it.ID).Error)
		assert.Equal(t, "apple", got.Name)
		assert.Equal(t, 3, got.Qty)
		assert.False(t, got.CreatedAt.IsZero(), "time columns scan back into time.Time")

		res := d.WithContext(ctx).Model(&Item{}).Where("id = ?", it.ID).Update("qty", 7)
		require.NoError(t, res.Error)
		assert.EqualValues(t, 1, res.RowsAffected)
		require.NoError(t, d.WithContext(ctx).First(&got, it.ID).Error)
		assert.Equal(t, 7, got.Qty)

		var n int64
		require.NoError(t, d.WithContext(ctx).Model(&Item{}).Count(&n).Error)
		assert.EqualValues(t, 1, n)

		require.NoError(t, d.WithContext(ctx).Delete(&Item{}, it.ID).Error)
		err := d.WithContext(ctx).First(&got, it.ID).Error
		assert.ErrorIs(t, err, gorm.ErrRecordNotFound)
	})
}

func TestDuplicateKeyIsTranslated(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		d := openDB(t, tg.config(t))
		ctx := ctxT(t, 20*time.Second)
		require.NoError(t, d.AutoMigrate(ctx, &Item{}))
		require.NoError(t, d.WithContext(ctx).Create(&Item{Name: "dup"}).Error)

		err := d.WithContext(ctx).Create(&Item{Name: "dup"}).Error
		require.Error(t, err)
		assert.ErrorIs(t, err, gorm.ErrDuplicatedKey)
		// The same through a transaction, where the error crosses fn.
		err = d.Transaction(ctx, func(tx *gorm.DB) error { return tx.Create(&Item{Name: "dup"}).Error })
		assert.ErrorIs(t, err, gorm.ErrDuplicatedKey)
	})
}

func TestTransactions(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		d := openDB(t, tg.config(t))
		ctx := ctxT(t, 30*time.Second)
		require.NoError(t, d.AutoMigrate(ctx, &Item{}))
		names := func() []string {
			var items []Item
			require.NoError(t, d.WithContext(ctx).Order("name").Find(&items).Error)
			var out []string
			for _, it := range items {
				out = append(out, it.Name)
			}
			return out
		}
		errBoom := errors.New("boom")

		t.Run("commit", func(t *testing.T) {
			require.NoError(t, d.Transaction(ctx, func(tx *gorm.DB) error {
				return tx.Create(&Item{Name: "a-commit"}).Error
			}))
			assert.Contains(t, names(), "a-commit")
		})

		t.Run("rollback on error", func(t *testing.T) {
			err := d.Transaction(ctx, func(tx *gorm.DB) error {
				require.NoError(t, tx.Create(&Item{Name: "b-rollback"}).Error)
				return errBoom
			})
			assert.ErrorIs(t, err, errBoom)
			assert.NotContains(t, names(), "b-rollback")
		})

		t.Run("rollback on panic", func(t *testing.T) {
			assert.Panics(t, func() {
				_ = d.Transaction(ctx, func(tx *gorm.DB) error {
					require.NoError(t, tx.Create(&Item{Name: "c-panic"}).Error)
					panic("boom")
				})
			})
			assert.NotContains(t, names(), "c-panic")
		})

		t.Run("nested through ctx uses a savepoint", func(t *testing.T) {
			err := d.Transaction(ctx, func(tx *gorm.DB) error {
				txCtx := tx.Statement.Context
				if err := tx.Create(&Item{Name: "d-outer"}).Error; err != nil {
					return err
				}
				// A repository given txCtx joins the transaction...
				if err := d.WithContext(txCtx).Create(&Item{Name: "d-joined"}).Error; err != nil {
					return err
				}
				// ...and a nested Transaction that fails is undone alone.
				inner := d.Transaction(txCtx, func(tx2 *gorm.DB) error {
					require.NoError(t, tx2.Create(&Item{Name: "d-inner"}).Error)
					return errBoom
				})
				assert.ErrorIs(t, inner, errBoom)
				return d.Transaction(txCtx, func(tx2 *gorm.DB) error {
					return tx2.Create(&Item{Name: "d-inner-ok"}).Error
				})
			})
			require.NoError(t, err)
			got := names()
			assert.Subset(t, got, []string{"d-outer", "d-joined", "d-inner-ok"})
			assert.NotContains(t, got, "d-inner")
		})

		t.Run("gorm tx.Transaction nests the same way", func(t *testing.T) {
			err := d.Transaction(ctx, func(tx *gorm.DB) error {
				require.NoError(t, tx.Create(&Item{Name: "e-outer"}).Error)
				assert.ErrorIs(t, tx.Transaction(func(tx2 *gorm.DB) error {
					require.NoError(t, tx2.Create(&Item{Name: "e-inner"}).Error)
					return errBoom
				}), errBoom)
				return nil
			})
			require.NoError(t, err)
			assert.Contains(t, names(), "e-outer")
			assert.NotContains(t, names(), "e-inner")
		})

		t.Run("outer rollback undoes joined work", func(t *testing.T) {
			err := d.Transaction(ctx, func(tx *gorm.DB) error {
				require.NoError(t, d.WithContext(tx.Statement.Context).Create(&Item{Name: "f-joined"}).Error)
				require.NoError(t, d.Transaction(tx.Statement.Context, func(tx2 *gorm.DB) error {
					return tx2.Create(&Item{Name: "f-inner"}).Error
				}))
				return errBoom
			})
			assert.ErrorIs(t, err, errBoom)
			got := names()
			assert.NotContains(t, got, "f-joined")
			assert.NotContains(t, got, "f-inner")
		})

		t.Run("outside the transaction ctx does not join", func(t *testing.T) {
			// A plain ctx must never pick up someone's transaction.
			require.NoError(t, d.Transaction(ctx, func(tx *gorm.DB) error {
				assert.Nil(t, txFrom(ctx))
				assert.NotNil(t, txFrom(tx.Statement.Context))
				return nil
			}))
		})
	})
}

// migrations returns goose files for prefix: a table created by version
// 1, then rows written by versions 2 and 10, so that applying out of
// version order or twice shows in the table. Versions 1 and 2 also sleep,
// so two migrators started together overlap.
func migrations(t testing.TB, driver, prefix string) fstest.MapFS {
	id, sleep := "", ""
	switch driver {
	case DriverMySQL:
		id, sleep = "BIGINT AUTO_INCREMENT PRIMARY KEY", "DO SLEEP(0.2);"
	case DriverPostgres:
		id, sleep = "BIGSERIAL PRIMARY KEY", "SELECT pg_sleep(0.2);"
	default:
		id = "INTEGER PRIMARY KEY AUTOINCREMENT"
		sleep = sqliteBusy(t, 50*time.Millisecond) + ";"
	}
	file := func(up, down string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("-- +goose Up\n" + up + "\n-- +goose Down\n" + down + "\n")}
	}
	return fstest.MapFS{
		"migrations/1_create.sql": file(
			fmt.Sprintf("CREATE TABLE %slog (id %s, step INT NOT NULL);\n%s", prefix, id, sleep),
			fmt.Sprintf("DROP TABLE %slog;", prefix)),
		"migrations/2_two.sql": file(
			fmt.Sprintf("INSERT INTO %slog (step) VALUES (2);\n%s", prefix, sleep),
			fmt.Sprintf("DELETE FROM %slog WHERE step = 2;", prefix)),
		"migrations/10_ten.sql": file(
			fmt.Sprintf("INSERT INTO %slog (step) VALUES (10);", prefix),
			fmt.Sprintf("DELETE FROM %slog WHERE step = 10;", prefix)),
		"migrations/README.md": &fstest.MapFile{Data: []byte("not a migration")},
	}
}

func steps(t *testing.T, d *testDB) []int {
	var s []int
	require.NoError(t, d.GetDB().Table(d.prefix+"log").Order("id").Pluck("step", &s).Error)
	return s
}

func versions(t *testing.T, d *testDB, table string) []int64 {
	var v []int64
	require.NoError(t, d.GetDB().Table(table).Order("id").Pluck("version_id", &v).Error)
	return v
}

// migrateTogether runs Migrate on every instance at the same moment.
func migrateTogether(t *testing.T, ctx context.Context, fsys fstest.MapFS, table string, dbs ...*testDB) {
	var wg sync.WaitGroup
	errs := make([]error, len(dbs))
	start := make(chan struct{})
	for i, d := range dbs {
		wg.Go(func() {
			<-start
			errs[i] = d.Migrate(ctx, fsys, "migrations", WithVersionTable(table))
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

func applied(dbs ...*testDB) int {
	n := 0
	for _, d := range dbs {
		n += len(d.logs.FilterMessage("migration applied").All())
	}
	return n
}

func TestMigrateTwoInstancesAtOnce(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		cfg := tg.config(t)
		prefix := randomPrefix()
		a := openPrefixed(t, prefix, cfg)
		b := openPrefixed(t, prefix, cfg) // a second app on the same database
		all := migrations(t, tg.driver, prefix)
		table := prefix + "goose"
		ctx := ctxT(t, 30*time.Second)

		// First deployment: an empty database, two instances start.
		first := fstest.MapFS{"migrations/1_create.sql": all["migrations/1_create.sql"]}
		migrateTogether(t, ctx, first, table, a, b)
		assert.Equal(t, []int64{0, 1}, versions(t, a, table))
		assert.Equal(t, 1, applied(a, b))

		// Next deployment: new files, the version table exists, two
		// instances start. Without the lock both would apply 2 and 10.
		migrateTogether(t, ctx, all, table, a, b)
		assert.Equal(t, []int{2, 10}, steps(t, a), "each migration once, in version order")
		assert.Equal(t, []int64{0, 1, 2, 10}, versions(t, a, table))
		assert.Equal(t, 3, applied(a, b), "three migrations applied between the two instances")

		// A restart applies nothing; a new file applies alone.
		require.NoError(t, b.Migrate(ctx, all, "migrations", WithVersionTable(table)))
		all["migrations/11_eleven.sql"] = &fstest.MapFile{Data: []byte(
			"-- +goose Up\nINSERT INTO " + prefix + "log (step) VALUES (11);\n")}
		require.NoError(t, a.Migrate(ctx, all, "migrations", WithVersionTable(table)))
		assert.Equal(t, []int{2, 10, 11}, steps(t, a))
		assert.Equal(t, 4, applied(a, b))
	})
}

func TestMigrateFailureStopsAndNamesTheFile(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		d := openDB(t, tg.config(t))
		ctx := ctxT(t, 20*time.Second)
		fsys := migrations(t, tg.driver, d.prefix)
		fsys["migrations/3_broken.sql"] = &fstest.MapFile{Data: []byte("-- +goose Up\nINSERT INTO no_such_table_" + d.prefix + " VALUES (1);\n")}
		err := d.Migrate(ctx, fsys, "migrations", WithVersionTable(d.prefix+"goose"))
		require.Error(t, err)
		assert.Equal(t, lifecycle.TypeInternal, lifecycle.TypeOf(err))
		assert.Contains(t, err.Error(), "3_broken.sql")
		assert.Equal(t, []int{2}, steps(t, d), "migrations before the broken one stay applied")
		assert.Equal(t, []int64{0, 1, 2}, versions(t, d, d.prefix+"goose"))
	})
}

func TestMigrateBadInput(t *testing.T) {
	d := openDB(t, sqliteTarget().config(t))
	ctx := ctxT(t, 10*time.Second)
	err := d.Migrate(ctx, fstest.MapFS{"m/readme.txt": {}}, "m")
	assert.ErrorIs(t, err, lifecycle.ErrValidation)
	assert.Contains(t, err.Error(), "no migration files")

	err = d.Migrate(ctx, migrations(t, DriverSQLite, d.prefix), "migrations", WithVersionTable("bad name; drop"))
	assert.ErrorIs(t, err, lifecycle.ErrValidation)

	err = d.Migrate(ctx, fstest.MapFS{"m/1_x.sql": {Data: []byte("no goose annotations")}}, "m")
	require.Error(t, err)
	assert.NotEmpty(t, lifecycle.TypeOf(err))
}

func TestAutoMigrateTwoInstancesAtOnce(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		cfg := tg.config(t)
		prefix := randomPrefix()
		a := openPrefixed(t, prefix, cfg)
		b := openPrefixed(t, prefix, cfg)
		ctx := ctxT(t, 30*time.Second)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i, d := range []*testDB{a, b} {
			wg.Go(func() {
				<-start
				errs[i] = d.AutoMigrate(ctx, &Item{})
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		assert.True(t, a.GetDB().Migrator().HasTable(&Item{}))
	})
}

// TestMigrationLockWaitIsBoundedByCtx: while one instance holds the lock,
// another gives up when its ctx ends, with a TIMEOUT error.
func TestMigrationLockWaitIsBoundedByCtx(t *testing.T) {
	eachDriver(t, func(t *testing.T, tg target) {
		cfg := tg.config(t)
		prefix := randomPrefix()
		a := openPrefixed(t, prefix, cfg)
		b := openPrefixed(t, prefix, cfg)
		held := make(chan struct{})
		release := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- a.withMigrationLock(context.Background(), prefix+"goose", func(*sql.Conn) error {
				close(held)
				<-release
				return nil
			})
		}()
		<-held
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := b.Migrate(ctx, migrations(t, tg.driver, prefix), "migrations", WithVersionTable(prefix+"goose"))
		took := time.Since(start)
		close(release)
		require.NoError(t, <-done)
		require.Error(t, err)
		assert.Equal(t, lifecycle.TypeTimeout, lifecycle.TypeOf(err), err.Error())
		assert.Less(t, took, 3*time.Second)
		// Once released, b migrates.
		require.NoError(t, b.Migrate(ctxT(t, 20*time.Second), migrations(t, tg.driver, prefix), "migrations", WithVersionTable(prefix+"goose")))
		assert.Equal(t, []int{2, 10}, steps(t, b))
	})
}
