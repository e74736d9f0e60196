package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/gochat/im-infra/lifecycle"
)

// DB is a connection pool behind gorm, with the module's logging, metrics,
// live pool sizes and migrations. It is safe for concurrent use.
type DB struct {
	opts   options
	opened atomic.Bool // open succeeded; the fields below are set

	gorm  *gorm.DB
	sql   *sql.DB
	conn  *connector
	log   *zap.Logger
	sqlog *sqlLog
	in    *instruments

	mu      sync.Mutex
	cfg     Config // the config applied now
	started Config // the config the pool was opened with

	closeOnce sync.Once
	closeErr  error
}

// Option configures New.
type Option func(*options)

type options struct {
	log    *zap.Logger
	meter  metric.MeterProvider
	tracer trace.TracerProvider
	gorm   []func(*gorm.Config)
}

// WithLogger sets the logger; New logs connects, config changes and SQL
// (per Config.LogLevel) through it. Default: no logging.
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithMeterProvider records the db.* metrics there. Default: none.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meter = mp }
}

// WithTracerProvider wraps every statement in a client span. Default: no spans.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}

// WithGormConfig adjusts the gorm.Config (a NamingStrategy, NowFunc,
// PrepareStmt, SkipDefaultTransaction, ...). TranslateError and Logger are
// the module's and are set after fn runs.
func WithGormConfig(fn func(*gorm.Config)) Option {
	return func(o *options) { o.gorm = append(o.gorm, fn) }
}

// New validates cfg, opens the pool and pings the server within
// cfg.DialTimeout (or ctx, if sooner). A server that does not answer is a
// CONNECTION *lifecycle.InfraError naming the address, never the password.
func New(ctx context.Context, cfg Config, opts ...Option) (*DB, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	d := newDB(o)
	if err := d.open(ctx, cfg); err != nil {
		return nil, err
	}
	return d, nil
}

// newDB returns an unopened DB: no I/O, nothing usable until open.
func newDB(o options) *DB {
	if o.log == nil {
		o.log = zap.NewNop()
	}
	if o.meter == nil {
		o.meter = metricnoop.NewMeterProvider()
	}
	return &DB{opts: o, log: o.log}
}

// open connects; it is called once, by New or by the fx OnStart hook.
func (d *DB) open(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	start := time.Now()
	conn, err := cfg.connector()
	if err != nil {
		return err
	}
	sqlDB, err := conn.open(driverLogger{d.log})
	if err != nil {
		if lifecycle.TypeOf(err) != "" {
			return err
		}
		return lifecycle.ConfigError(ModuleName, "", "cannot build the "+conn.driver+" connector", scrub(err, conn.secrets))
	}
	applyPool(sqlDB, cfg)

	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout.Std())
	err = ping(pctx, sqlDB, conn.driver)
	cancel()
	if err != nil {
		_ = sqlDB.Close()
		return connectError(conn, cfg, err)
	}

	sqlog := newSQLLog(d.log, cfg)
	gcfg := &gorm.Config{}
	for _, fn := range d.opts.gorm {
		fn(gcfg)
	}
	gcfg.TranslateError = true
	gcfg.Logger = &sqlLogger{s: sqlog}
	// open has just pinged, with a deadline; gorm's own ping has none.
	gcfg.DisableAutomaticPing = true
	g, err := gorm.Open(conn.dialector(sqlDB), gcfg)
	if err != nil {
		_ = sqlDB.Close()
		return connectError(conn, cfg, err)
	}
	in, err := newInstruments(d.opts.meter, sqlDB.Stats)
	if err != nil {
		_ = sqlDB.Close()
		return lifecycle.InternalError(ModuleName, "metrics", "cannot create instruments", err)
	}
	plugin := &instrumentation{in: in, log: &sqlLogger{s: sqlog}, system: systemName(conn.driver)}
	if d.opts.tracer != nil {
		plugin.tracer = d.opts.tracer.Tracer(meterName)
	}
	if err := g.Use(plugin); err != nil {
		in.close()
		_ = sqlDB.Close()
		return lifecycle.InternalError(ModuleName, "plugin", "cannot register callbacks", err)
	}
	d.gorm, d.sql, d.conn, d.sqlog, d.in = g, sqlDB, conn, sqlog, in
	d.cfg, d.started = cfg, cfg
	d.opened.Store(true)
	d.log.Info("connected",
		zap.String("driver", conn.driver),
		zap.String("address", conn.address),
		zap.Duration("elapsed", time.Since(start)),
		zap.Int("max_open_conns", cfg.MaxOpenConns),
		zap.Int("max_idle_conns", cfg.MaxIdleConns))
	return nil
}

func connectError(conn *connector, cfg Config, err error) error {
	return &lifecycle.InfraError{
		Type:      lifecycle.TypeConnection,
		Component: ModuleName,
		Op:        "connect",
		Message:   fmt.Sprintf("cannot reach %s at %s (dial timeout %s)", conn.driver, conn.address, cfg.DialTimeout),
		Cause:     scrub(err, conn.secrets),
	}
}

func applyPool(s *sql.DB, cfg Config) {
	// Open first: SetMaxOpenConns lowers the idle cap when it is above it.
	s.SetMaxOpenConns(cfg.MaxOpenConns)
	s.SetMaxIdleConns(cfg.MaxIdleConns)
	s.SetConnMaxLifetime(cfg.ConnMaxLifetime.Std())
	s.SetConnMaxIdleTime(cfg.ConnMaxIdleTime.Std())
}

// GetDB returns the root *gorm.DB: everything gorm can do, with no context.
// Prefer WithContext.
func (d *DB) GetDB() *gorm.DB { return d.gorm }

// SQL returns the *sql.DB under gorm.
func (d *DB) SQL() *sql.DB { return d.sql }

// Driver is mysql, postgres or sqlite.
func (d *DB) Driver() string { return d.conn.driver }

// WithContext returns a session bound to ctx. When ctx carries a
// transaction (it is the ctx of a Transaction's fn, see Transaction), the
// session runs in that transaction.
func (d *DB) WithContext(ctx context.Context) *gorm.DB {
	if tx := txFrom(ctx); tx != nil {
		return tx.WithContext(ctx)
	}
	return d.gorm.WithContext(ctx)
}

type txKey struct{}

func txFrom(ctx context.Context) *gorm.DB {
	tx, _ := ctx.Value(txKey{}).(*gorm.DB)
	return tx
}

// Transaction runs fn in a transaction: committed when fn returns nil,
// rolled back when it returns an error or panics.
//
// A transaction travels in the context. tx.Statement.Context inside fn
// carries it, so code given that ctx joins the transaction: d.WithContext
// runs in it, and d.Transaction nests in it with a SAVEPOINT, rolled back
// alone when the inner fn fails. (gorm's tx.Transaction nests the same way.)
// Do not share a transaction's ctx with another goroutine: a transaction
// is one connection.
func (d *DB) Transaction(ctx context.Context, fn func(tx *gorm.DB) error, opts ...*sql.TxOptions) error {
	if outer := txFrom(ctx); outer != nil {
		return outer.WithContext(ctx).Transaction(fn)
	}
	return d.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return fn(tx.WithContext(context.WithValue(ctx, txKey{}, tx)))
	}, opts...)
}

// AutoMigrate creates or alters the tables of dst (gorm's AutoMigrate)
// while holding the migration lock, so instances that start together do
// not race to create the same table.
func (d *DB) AutoMigrate(ctx context.Context, dst ...any) error {
	start := time.Now()
	err := d.withMigrationLock(ctx, "gorm_automigrate", func(conn *sql.Conn) error {
		// On the connection that holds the lock: a pool of one would
		// otherwise wait on itself.
		g := d.gorm.WithContext(ctx)
		g.Statement.ConnPool = conn
		return g.AutoMigrate(dst...)
	})
	if err != nil {
		return migrateError(ctx, "automigrate", "gorm AutoMigrate failed", err, d.conn.secrets)
	}
	d.log.Info("automigrate done", zap.Int("models", len(dst)), zap.Duration("elapsed", time.Since(start)))
	return nil
}

// Ping checks that the server answers, within ctx.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.sql.PingContext(ctx); err != nil {
		return &lifecycle.InfraError{
			Type: lifecycle.TypeConnection, Component: ModuleName, Op: "ping",
			Message: fmt.Sprintf("%s at %s does not answer", d.conn.driver, d.conn.address),
			Cause:   scrub(err, d.conn.secrets),
		}
	}
	return nil
}

// Stats returns the pool's statistics.
func (d *DB) Stats() sql.DBStats { return d.sql.Stats() }

// Config returns the config applied now.
func (d *DB) Config() Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Close closes the pool: idle connections at once, busy ones as they are
// returned. It is safe to call more than once.
func (d *DB) Close() error {
	if !d.opened.Load() {
		return nil
	}
	d.closeOnce.Do(func() {
		start := time.Now()
		d.in.close()
		if err := d.sql.Close(); err != nil {
			d.closeErr = lifecycle.WrapError(lifecycle.TypeConnection, ModuleName, "close", scrub(err, d.conn.secrets), "closing the pool failed")
		}
		d.log.Info("closed", zap.String("driver", d.conn.driver), zap.String("address", d.conn.address),
			zap.Duration("elapsed", time.Since(start)))
	})
	return d.closeErr
}

// Apply applies cfg to the running pool without reconnecting: pool sizes
// and lifetimes (database/sql keeps open connections and closes only what
// the new limits exceed), slowQueryThreshold and logLevel. A change to any
// other field (driver, address, credentials, TLS, dialTimeout) needs a
// restart: Apply logs it at warn and the db.config.restart_pending gauge
// shows 1 until the config matches the running pool again.
func (d *DB) Apply(cfg Config) error {
	if !d.opened.Load() {
		return lifecycle.NewError(lifecycle.TypeInternal, ModuleName, "apply", "the pool is not open yet")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	old := d.cfg
	d.cfg = cfg
	restart := restartFields(d.started, cfg)
	d.mu.Unlock()

	if changed := liveChanges(old, cfg); len(changed) > 0 {
		applyPool(d.sql, cfg)
		d.sqlog.apply(cfg)
		d.log.Info("config change applied",
			zap.Strings("changed", changed),
			zap.Int("max_open_conns", cfg.MaxOpenConns),
			zap.Int("max_idle_conns", cfg.MaxIdleConns),
			zap.Duration("conn_max_lifetime", cfg.ConnMaxLifetime.Std()),
			zap.Duration("conn_max_idle_time", cfg.ConnMaxIdleTime.Std()),
			zap.Duration("slow_query_threshold", cfg.SlowQueryThreshold.Std()),
			zap.String("log_level", cfg.LogLevel))
	}
	if len(restart) > 0 && !slices.Equal(restart, restartFields(d.started, old)) {
		// Names only: the values may be credentials.
		d.log.Warn("config change needs a restart to apply; the running pool keeps its old settings",
			zap.Strings("fields", restart))
	}
	d.in.restart.Store(len(restart) > 0)
	return nil
}

// migrateError classifies a migration failure: TIMEOUT when ctx ran out
// (usually while waiting for another instance's lock), else INTERNAL.
func migrateError(ctx context.Context, op, msg string, err error, secrets []string) error {
	var ie *lifecycle.InfraError
	if errors.As(err, &ie) {
		return err
	}
	typ := lifecycle.TypeInternal
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		typ = lifecycle.TypeTimeout
	}
	return lifecycle.WrapError(typ, ModuleName, op, scrub(err, secrets), msg)
}

// ping pings db within ctx. A sqlite file that another connection (another
// app, at start) is switching to WAL at the same moment reports
// SQLITE_BUSY at once rather than through its busy timeout, so for sqlite a
// busy file is tried again until ctx ends.
func ping(ctx context.Context, db *sql.DB, driver string) error {
	for {
		err := db.PingContext(ctx)
		if err == nil || driver != DriverSQLite || sqliteCode(err) != sqliteBusyCode {
			return err
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
