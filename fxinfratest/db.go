package fxinfratest

import (
	"context"
	"encoding/json"
	"time"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/db"
)

// DBKind is the database WithDB gives an app.
type DBKind string

// The databases WithDB knows.
const (
	// SQLite is a fresh file in the test's temp dir: no server needed.
	SQLite DBKind = db.DriverSQLite
	// MySQL is the MariaDB/MySQL server devstack.MySQLDSN names.
	MySQL DBKind = db.DriverMySQL
	// Postgres is the PostgreSQL server devstack.PostgresDSN names.
	Postgres DBKind = db.DriverPostgres
)

// WithDB seeds the "db" config with a database of kind. A MySQL or
// Postgres server that does not answer within 2s skips the test, or fails
// it when IMINFRA_TEST_REQUIRE_REAL=1. The server's database is shared with
// other tests: give tables names of the test's own. The app still needs
// db.Module in its graph and something that asks for *db.DB.
func WithDB(kind DBKind) Option {
	return func(s *Setup) {
		t := s.T()
		t.Helper()
		doc := map[string]string{"driver": string(kind)}
		switch kind {
		case SQLite:
			file, err := devstack.SQLiteFile(t.TempDir(), "app")
			if err != nil {
				t.Fatalf("fxinfratest: sqlite: %v", err)
			}
			doc["database"] = file
		case MySQL, Postgres:
			dsn := devstack.MySQLDSN()
			if kind == Postgres {
				dsn = devstack.PostgresDSN()
			}
			probeSQL(s, kind, dsn)
			doc["dsn"] = dsn
		default:
			t.Fatalf("fxinfratest: WithDB(%q): use SQLite, MySQL or Postgres", kind)
		}
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("fxinfratest: %v", err)
		}
		s.Config(db.ModuleName, string(b))
	}
}

// probeSQL connects once through the db module itself, so the same DSN
// parsing and errors apply as in the app.
func probeSQL(s *Setup, kind DBKind, dsn string) {
	t := s.T()
	t.Helper()
	cfg := db.Config{}.Defaults()
	cfg.Driver, cfg.DSN, cfg.DialTimeout = string(kind), config.Secret(dsn), config.Duration(2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d, err := db.New(ctx, cfg)
	if err != nil {
		if devstack.RequireReal() {
			t.Fatalf("fxinfratest: %s: %v (%s=1)", kind, err, devstack.EnvRequireReal)
		}
		t.Skipf("fxinfratest: %s does not answer: %v", kind, err)
	}
	_ = d.Close()
}
