package db_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing/fstest"

	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/gochat/im-infra/modules/db"
)

type Order struct {
	ID     uint   `gorm:"primaryKey"`
	Number string `gorm:"size:32;uniqueIndex"`
	Cents  int64
}

// openExample opens a SQLite database in a temporary directory.
func openExample() (*db.DB, func()) {
	dir, err := os.MkdirTemp("", "db-example")
	if err != nil {
		panic(err)
	}
	cfg := db.Config{}.Defaults()
	cfg.Driver, cfg.Database = db.DriverSQLite, filepath.Join(dir, "shop.db")
	d, err := db.New(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	return d, func() { _ = d.Close(); _ = os.RemoveAll(dir) }
}

func ExampleNew() {
	ctx := context.Background()
	cfg := db.Config{}.Defaults() // 25 open, 10 idle, 1h lifetime, 30m idle time
	dir, _ := os.MkdirTemp("", "db-example")
	defer os.RemoveAll(dir)
	cfg.Driver, cfg.Database = db.DriverSQLite, filepath.Join(dir, "shop.db")
	// In production: cfg.Driver, cfg.Host, cfg.User, cfg.Password, cfg.Database
	// (or cfg.DSN), from the "db" config component.

	d, err := db.New(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()

	if err := d.AutoMigrate(ctx, &Order{}); err != nil {
		fmt.Println(err)
		return
	}
	d.WithContext(ctx).Create(&Order{Number: "A-1", Cents: 1250})

	var o Order
	err = d.WithContext(ctx).Where("number = ?", "A-1").First(&o).Error
	fmt.Println(o.Number, o.Cents, err)

	err = d.WithContext(ctx).Create(&Order{Number: "A-1"}).Error
	fmt.Println(errors.Is(err, gorm.ErrDuplicatedKey))
	// Output:
	// A-1 1250 <nil>
	// true
}

func ExampleDB_Transaction() {
	d, done := openExample()
	defer done()
	ctx := context.Background()
	_ = d.AutoMigrate(ctx, &Order{})

	err := d.Transaction(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&Order{Number: "B-1"}).Error; err != nil {
			return err
		}
		// The transaction travels in tx.Statement.Context: a nested
		// Transaction given it runs in a SAVEPOINT and fails alone.
		inner := d.Transaction(tx.Statement.Context, func(tx *gorm.DB) error {
			tx.Create(&Order{Number: "B-2"})
			return errors.New("payment declined")
		})
		fmt.Println("inner:", inner)
		return nil
	})
	fmt.Println("outer:", err)

	var numbers []string
	d.WithContext(ctx).Model(&Order{}).Order("number").Pluck("number", &numbers)
	fmt.Println(numbers)
	// Output:
	// inner: payment declined
	// outer: <nil>
	// [B-1]
}

func ExampleDB_Migrate() {
	d, done := openExample()
	defer done()
	migrations := fstest.MapFS{ // usually an embed.FS
		"migrations/001_orders.sql": {Data: []byte(`-- +goose Up
CREATE TABLE orders (id INTEGER PRIMARY KEY, number TEXT NOT NULL UNIQUE);
-- +goose Down
DROP TABLE orders;
`)},
		"migrations/002_cents.sql": {Data: []byte(`-- +goose Up
ALTER TABLE orders ADD COLUMN cents INTEGER NOT NULL DEFAULT 0;
`)},
	}
	ctx := context.Background()
	fmt.Println(d.Migrate(ctx, migrations, "migrations"))
	fmt.Println(d.Migrate(ctx, migrations, "migrations")) // nothing left to do

	var version int64
	d.GetDB().Raw("SELECT max(version_id) FROM goose_db_version").Scan(&version)
	fmt.Println("version", version)
	// Output:
	// <nil>
	// <nil>
	// version 2
}

func ExampleDB_RetryTransaction() {
	d, done := openExample()
	defer done()
	ctx := context.Background()
	_ = d.AutoMigrate(ctx, &Order{})
	d.WithContext(ctx).Create(&Order{Number: "C-1"})

	// Run again (from BEGIN) if the database aborts it with a deadlock or
	// a serialization failure; at most 3 attempts.
	err := d.RetryTransaction(ctx, db.RetryOptions{Attempts: 3}, func(tx *gorm.DB) error {
		return tx.Model(&Order{}).Where("number = ?", "C-1").
			Update("cents", gorm.Expr("cents + ?", 100)).Error
	})
	var o Order
	d.WithContext(ctx).First(&o, "number = ?", "C-1")
	fmt.Println(err, o.Cents)
	// Output: <nil> 100
}

// A service asks for *db.DB; the pool opens when the app starts, from the
// "db" config component (/config/{env}/{service}/db), and migrates in its
// own OnStart, which runs after the pool's.
func ExampleModule() {
	_ = fx.Options(
		db.Module,
		fx.Invoke(func(lc fx.Lifecycle, d *db.DB) {
			lc.Append(fx.Hook{OnStart: func(ctx context.Context) error {
				return d.AutoMigrate(ctx, &Order{})
			}})
		}),
	)
}
