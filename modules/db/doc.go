// Package db is im-infra's database module: a GORM connection pool for
// MySQL/MariaDB (the default), PostgreSQL or SQLite (pure Go, no cgo), with
// the pool sizes of the design document, live pool changes, SQL logging on
// zap, metrics and optional spans through OpenTelemetry, versioned
// migrations, and a retry helper for transactions the database aborts.
//
// # Using it
//
// In an fx app, ask for *db.DB: db.Module reads the "db" config component
// and opens the pool in its OnStart hook, so a service that never asks for
// a database never dials one. Without fx, New connects at once:
//
//	d, err := db.New(ctx, cfg, db.WithLogger(log), db.WithMeterProvider(mp))
//	d.WithContext(ctx).First(&order, id)
//
// GetDB returns the *gorm.DB itself, so nothing gorm can do is hidden.
//
// # Transactions travel in the context
//
// Transaction(ctx, fn) commits when fn returns nil. Inside fn,
// tx.Statement.Context carries the transaction: code handed that ctx joins
// it (WithContext returns a session in the transaction), and a nested
// Transaction runs in a SAVEPOINT that rolls back alone. RetryTransaction
// runs fn again from BEGIN when the database aborts it with a deadlock or
// serialization failure, a bounded number of times; it never retries inside
// another transaction, whose work the database has also thrown away.
//
// # Why it is built this way
//
// Statements are timed, counted and logged by a small gorm callback plugin
// (one allocation per statement) rather than gorm's OpenTelemetry plugin,
// which links every driver it knows (about 20 MB). Logging happens in the
// callbacks, not in gorm's Logger.Trace, because Trace only sees the SQL
// after gorm has inlined the bound values: logs and spans here carry the
// statement with its placeholders, never the values.
//
// Versioned migrations use github.com/pressly/goose/v3 (SQL files from an
// fs.FS, one dialect per driver). Instances that start together are
// serialised by a database lock held on one connection: GET_LOCK on
// MySQL/MariaDB, an advisory lock on PostgreSQL, a lease row taken by one
// INSERT ... ON CONFLICT on SQLite. AutoMigrate takes the same kind of
// lock.
//
// # How it fails
//
// A database that does not answer at start is a CONNECTION
// *lifecycle.InfraError within Config.DialTimeout, naming the address and
// never the password (errors from drivers are scrubbed of it). A connection
// that breaks later is replaced by database/sql on the next statement;
// statements fail within their ctx deadline while the server is away and
// succeed once it is back, without a restart. Invalid config is a
// VALIDATION error naming the field; a config change that cannot apply
// live (address, credentials, TLS) is logged at warn and shown by the
// db.config.restart_pending gauge.
package db
