package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/gochat/im-infra/lifecycle"
)

// Cache is what services use: the design document's calls (Get, Set, Del,
// HGet, HSet, SAdd, Lock, Ping, Close) grown to what IM services need.
// Keys are given without the configured prefix; values are written through
// Encode and read back with Decode. A missing key is ErrMiss; failures are
// *lifecycle.InfraError. Every call is bounded by commandTimeout when ctx
// has no earlier deadline.
type Cache interface {
	// Strings and counters. Expiration 0 means no expiry.
	Get(ctx context.Context, key string) (string, error)
	Set(ctx context.Context, key string, value any, expiration time.Duration) error
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) (bool, error)
	GetDel(ctx context.Context, key string) (string, error)
	Del(ctx context.Context, keys ...string) error
	MGet(ctx context.Context, keys ...string) (map[string]string, error)
	MSet(ctx context.Context, values map[string]any) error
	Incr(ctx context.Context, key string) (int64, error)
	IncrBy(ctx context.Context, key string, n int64) (int64, error)
	Decr(ctx context.Context, key string) (int64, error)
	Expire(ctx context.Context, key string, ttl time.Duration) (bool, error)
	TTL(ctx context.Context, key string) (time.Duration, error)
	Exists(ctx context.Context, keys ...string) (int64, error)

	// Hashes.
	HGet(ctx context.Context, key, field string) (string, error)
	HSet(ctx context.Context, key, field string, value any) error
	HGetAll(ctx context.Context, key string) (map[string]string, error)
	HDel(ctx context.Context, key string, fields ...string) (int64, error)
	HIncrBy(ctx context.Context, key, field string, n int64) (int64, error)
	HMGet(ctx context.Context, key string, fields ...string) (map[string]string, error)

	// Sets.
	SAdd(ctx context.Context, key string, members ...any) error
	SMembers(ctx context.Context, key string) ([]string, error)
	SIsMember(ctx context.Context, key string, member any) (bool, error)
	SRem(ctx context.Context, key string, members ...any) (int64, error)
	SCard(ctx context.Context, key string) (int64, error)

	// Sorted sets.
	ZAdd(ctx context.Context, key string, members ...Z) (int64, error)
	ZRange(ctx context.Context, key string, start, stop int64) ([]string, error)
	ZRevRange(ctx context.Context, key string, start, stop int64) ([]string, error)
	ZRangeByScore(ctx context.Context, key, min, max string) ([]string, error)
	ZRem(ctx context.Context, key string, members ...string) (int64, error)
	ZCard(ctx context.Context, key string) (int64, error)
	ZScore(ctx context.Context, key, member string) (float64, error)
	ZIncrBy(ctx context.Context, key string, incr float64, member string) (float64, error)

	// Lists.
	LPush(ctx context.Context, key string, values ...any) (int64, error)
	RPush(ctx context.Context, key string, values ...any) (int64, error)
	LRange(ctx context.Context, key string, start, stop int64) ([]string, error)
	LTrim(ctx context.Context, key string, start, stop int64) error
	LLen(ctx context.Context, key string) (int64, error)

	// Scripts and batches.
	Eval(ctx context.Context, script string, keys []string, args ...any) (Reply, error)
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) (Reply, error)
	ScriptLoad(ctx context.Context, script string) (string, error)
	Pipeline(ctx context.Context, cmds ...Cmd) ([]Reply, error)

	// Client-side caching and cache-aside.
	GetCached(ctx context.Context, key string, ttl time.Duration) (string, error)
	GetOrLoad(ctx context.Context, key string, ttl time.Duration, loader Loader) (string, error)
	Invalidate(ctx context.Context, keys ...string) error

	// Locks.
	Lock(ctx context.Context, key string, ttl time.Duration) (*Lock, error)
	TryLock(ctx context.Context, key string, ttl time.Duration) (*Lock, error)

	// Connection.
	Ping(ctx context.Context) error
	Close() error
	Client() rueidis.Client
}

var _ Cache = (*Client)(nil)

// Client is the Redis client behind Cache. Build one with New, or get
// cache.Cache from the fx Module.
type Client struct {
	log      *zap.Logger
	errs     *lifecycle.ErrorHandler // nil: errors are not counted
	metrics  *metrics
	tracer   trace.Tracer // nil: no spans
	spanOpts [numCommands][]trace.SpanStartOption

	sess    atomic.Pointer[session]
	live    atomic.Pointer[live]
	shared  atomic.Pointer[sharedDeadline]
	down    atomic.Bool // the last call found Redis unreachable
	dialing atomic.Pointer[dialBound]

	loads  singleflight.Group
	recent recentInvalidations // keys Invalidate dropped, read from Redis for a moment

	mu      sync.Mutex
	closed  bool
	locks   map[*Lock]struct{}
	loaders sync.WaitGroup
	// background holds cleanups that must not delay the caller (the
	// release after a failed lock acquire); Close waits for them.
	background sync.WaitGroup
	life       context.Context // ended by Close: stops lock keepalives and loaders
	endLife    context.CancelFunc
}

// session is one connected rueidis client and what was learnt connecting.
type session struct {
	rc       rueidis.Client
	cfg      Config // the config it was built from (restart fields)
	cluster  bool
	tracking bool // client-side caching works (RESP3 CLIENT TRACKING)
	scripts  scripts
}

// live holds the fields that apply without a restart.
type live struct {
	prefix      string
	timeout     time.Duration
	defaultTTL  time.Duration
	loadTimeout time.Duration
	localTTL    time.Duration
}

func (l *live) full(key string) string {
	if l.prefix == "" {
		return key
	}
	return l.prefix + key
}

func (l *live) fullKeys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = l.full(k)
	}
	return out
}

func liveOf(cfg Config) *live {
	return &live{
		prefix:      cfg.KeyPrefix,
		timeout:     cfg.CommandTimeout.Std(),
		defaultTTL:  cfg.DefaultTTL.Std(),
		loadTimeout: cfg.LoadTimeout.Std(),
		localTTL:    cfg.ClientCache.TTL.Std(),
	}
}

// Option configures New.
type Option func(*options)

type options struct {
	log    *zap.Logger
	meter  metric.MeterProvider
	tracer trace.TracerProvider
	errs   *lifecycle.ErrorHandler
}

// WithLogger sets the logger (default: none). Lines carry module=cache when
// the logger comes from clog.
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithMeterProvider sets where metrics go (default: nowhere).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.meter = mp } }

// WithTracerProvider makes every call a client span (default: no spans).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tracer = tp } }

// WithErrorHandler passes every error a call returns through h, which
// counts the InfraErrors in infra_errors_total (default: none).
func WithErrorHandler(h *lifecycle.ErrorHandler) Option { return func(o *options) { o.errs = h } }

// New connects to Redis as cfg says and returns the client. It fails with
// a VALIDATION error for a bad config, a CONFIG error for refused
// credentials or unreadable TLS files, and a CONNECTION error naming the
// addresses when no server answers within dialTimeout (or ctx).
func New(ctx context.Context, cfg Config, opts ...Option) (*Client, error) {
	c, err := newClient(opts...)
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx, cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// newClient builds an unconnected client (no I/O), as the fx constructor
// needs: calls fail with a CONNECTION error until start.
func newClient(opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = zap.NewNop()
	}
	m, err := newMetrics(o.meter)
	if err != nil {
		return nil, lifecycle.InternalError(ModuleName, "metrics", "cannot create instruments", err)
	}
	c := &Client{log: o.log, errs: o.errs, metrics: m, locks: map[*Lock]struct{}{}}
	c.life, c.endLife = context.WithCancel(context.Background())
	if o.tracer != nil {
		c.tracer = o.tracer.Tracer(meterName)
		for cmd := range numCommands {
			c.spanOpts[cmd] = []trace.SpanStartOption{
				trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", commandNames[cmd])),
			}
		}
	}
	c.live.Store(liveOf(Config{}.Defaults()))
	return c, nil
}

// dialBound carries the start ctx into the connections made while
// connecting, so New honours its ctx in the dial and in the handshake
// (which rueidis bounds only by dialTimeout): a connection opened during
// start is closed if that ctx ends before start is done. Later
// reconnects are bounded by dialTimeout alone.
type dialBound struct {
	ctx   context.Context
	mu    sync.Mutex
	stops []func() bool
}

func (b *dialBound) watch(conn net.Conn) {
	stop := context.AfterFunc(b.ctx, func() { _ = conn.Close() })
	b.mu.Lock()
	b.stops = append(b.stops, stop)
	b.mu.Unlock()
}

// done detaches the start ctx from the connections it watched.
func (b *dialBound) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, stop := range b.stops {
		stop()
	}
	b.stops = nil
}

func (c *Client) start(ctx context.Context, cfg Config) (err error) {
	defer c.handle(ctx, &err)
	if err := cfg.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return wrap(cmdPing, "", errNotStarted)
	}
	began := time.Now()
	c.live.Store(liveOf(cfg))
	opt, err := c.clientOption(cfg)
	if err != nil {
		return err
	}
	bound := &dialBound{ctx: ctx}
	c.dialing.Store(bound)
	rc, err := rueidis.NewClient(opt)
	tracking := !cfg.ClientCache.Disabled
	if errors.Is(err, rueidis.ErrNoCache) {
		// miniredis and Redis < 6 have no RESP3 CLIENT TRACKING.
		tracking = false
		opt.DisableCache = true
		rc, err = rueidis.NewClient(opt)
	}
	c.dialing.Store(nil)
	bound.done()
	if err == nil && ctx.Err() != nil {
		// ctx ended as start finished: a watched connection may be closed.
		rc.Close()
		err = ctx.Err()
	}
	if err != nil {
		return connectError(cfg, err)
	}
	if cfg.Mode == ModeCluster && rc.Mode() != rueidis.ClientModeCluster {
		rc.Close()
		return lifecycle.ConfigError(ModuleName, "mode",
			fmt.Sprintf("mode is cluster but %s is not a cluster node; set mode to standalone", strings.Join(cfg.Addresses, ",")), nil)
	}
	s := &session{rc: rc, cfg: cfg, cluster: rc.Mode() == rueidis.ClientModeCluster, tracking: tracking, scripts: newScripts()}
	c.sess.Store(s)
	if !tracking && !cfg.ClientCache.Disabled {
		c.log.Warn("redis has no CLIENT TRACKING (RESP3, Redis 6+); client-side caching is off and GetCached reads from the server",
			zap.Strings("addresses", cfg.Addresses))
	}
	c.log.Info("connected to redis",
		zap.String("mode", cfg.Mode),
		zap.Strings("addresses", cfg.Addresses),
		zap.Int("db", cfg.DB),
		zap.Bool("client_cache", tracking),
		zap.Bool("tls", cfg.TLS.On()),
		zap.String("key_prefix", cfg.KeyPrefix),
		zap.Duration("elapsed", time.Since(began)))
	return nil
}

// connectError explains a failed connect. The cause names the address
// (a dial error) or the server's refusal; neither carries the password.
func connectError(cfg Config, err error) error {
	if re, ok := rueidis.IsRedisErr(err); ok && isAuthError(re.Error()) {
		return &lifecycle.InfraError{Type: lifecycle.TypeConfig, Component: ModuleName, Op: "connect", Field: "password",
			Message: fmt.Sprintf("Redis at %s refused the credentials; check username and password", strings.Join(cfg.Addresses, ",")), Cause: err}
	}
	if msg := err.Error(); isAuthError(msg) {
		return &lifecycle.InfraError{Type: lifecycle.TypeConfig, Component: ModuleName, Op: "connect", Field: "password",
			Message: fmt.Sprintf("Redis at %s refused the credentials; check username and password", strings.Join(cfg.Addresses, ",")), Cause: err}
	}
	return &lifecycle.InfraError{Type: lifecycle.TypeConnection, Component: ModuleName, Op: "connect", Field: "addresses",
		Message: fmt.Sprintf("cannot connect to %s (%s mode)", strings.Join(cfg.Addresses, ","), cfg.Mode), Cause: err}
}

// clientOption maps Config onto rueidis options.
func (c *Client) clientOption(cfg Config) (rueidis.ClientOption, error) {
	dialer := net.Dialer{Timeout: cfg.DialTimeout.Std()}
	opt := rueidis.ClientOption{
		InitAddress:         append([]string(nil), cfg.Addresses...),
		Username:            cfg.Username,
		Password:            cfg.Password.Reveal(),
		SelectDB:            cfg.DB,
		Dialer:              dialer,
		ConnWriteTimeout:    cfg.connTimeout(),
		BlockingPoolSize:    cfg.Pool.Size,
		BlockingPoolMinSize: cfg.Pool.MinIdle,
		BlockingPoolCleanup: cfg.Pool.IdleTimeout.Std(),
		PipelineMultiplex:   cfg.Pool.PipelineMultiplex,
		RingScaleEachConn:   cfg.Pool.RingScale,
		MaxFlushDelay:       cfg.Pool.MaxFlushDelay.Std(),
		CacheSizeEachConn:   cfg.ClientCache.SizePerConn,
		DisableCache:        cfg.ClientCache.Disabled,
		ForceSingleClient:   cfg.Mode == ModeStandalone,
		ClientName:          "im-infra",
		DialCtxFn:           c.dial,
	}
	if cfg.Mode == ModeSentinel {
		opt.Sentinel = rueidis.SentinelOption{
			MasterSet:               cfg.Sentinel.MasterName,
			Username:                cfg.Sentinel.Username,
			Password:                cfg.Sentinel.Password.Reveal(),
			Dialer:                  dialer,
			TopologyRefreshInterval: cfg.Sentinel.RefreshInterval.Std(),
		}
	}
	if cfg.TLS.On() {
		tc, err := cfg.TLS.ClientConfig(ModuleName)
		if err != nil {
			return opt, err
		}
		opt.TLSConfig = tc
		opt.Sentinel.TLSConfig = tc
	}
	return opt, nil
}

// dial bounds the dials made during start by start's ctx too.
func (c *Client) dial(ctx context.Context, addr string, d *net.Dialer, tc *tls.Config) (net.Conn, error) {
	if b := c.dialing.Load(); b != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(b.ctx, cancel)
		defer stop()
	}
	var (
		conn net.Conn
		err  error
	)
	if tc != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if b := c.dialing.Load(); b != nil && err == nil {
		b.watch(conn)
	}
	return conn, err
}

// UpdateConfig applies a changed config: commandTimeout, keyPrefix,
// defaultTTL, loadTimeout and clientCache.ttl take effect at once (each
// change logged at info); any other changed field needs a restart, which
// is logged at warn with the field names. An invalid config is refused.
func (c *Client) UpdateConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := c.live.Load()
	nl := liveOf(cfg)
	c.live.Store(nl)
	changes := []struct {
		field    string
		from, to any
	}{
		{"commandTimeout", old.timeout, nl.timeout},
		{"keyPrefix", old.prefix, nl.prefix},
		{"defaultTTL", old.defaultTTL, nl.defaultTTL},
		{"loadTimeout", old.loadTimeout, nl.loadTimeout},
		{"clientCache.ttl", old.localTTL, nl.localTTL},
	}
	for _, ch := range changes {
		if ch.from != ch.to {
			c.log.Info("applied cache config change", zap.String("field", ch.field), zap.Any("from", ch.from), zap.Any("to", ch.to))
		}
	}
	if s := c.sess.Load(); s != nil {
		if fields := restartFields(s.cfg, cfg); len(fields) > 0 {
			c.log.Warn("cache config changed in fields that apply only after a restart; the running client keeps the old values",
				zap.Strings("fields", fields))
		}
	}
	return nil
}

// Client returns the underlying rueidis client (nil before the client has
// connected), for anything this package does not wrap. Keys given to it
// get no prefix and calls on it are not in this package's metrics.
func (c *Client) Client() rueidis.Client {
	if s := c.sess.Load(); s != nil {
		return s.rc
	}
	return nil
}

// Ping checks that Redis answers.
func (c *Client) Ping(ctx context.Context) (err error) {
	defer c.handle(ctx, &err)
	return c.ping(ctx)
}

func (c *Client) ping(ctx context.Context) error {
	_, err := c.one(ctx, cmdPing, "", func(b rueidis.Builder, _ string) rueidis.Completed { return b.Ping().Build() })
	return err
}

// Close releases the locks this client holds (each bounded by
// commandTimeout), cancels running loaders and waits for them, then closes
// the connections, waiting for calls in flight (each bounded by
// commandTimeout). Calls after Close fail with a CONNECTION error.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.endLife()
	locks := make([]*Lock, 0, len(c.locks))
	for l := range c.locks {
		locks = append(locks, l)
	}
	c.mu.Unlock()

	began := time.Now()
	released := 0
	for _, l := range locks {
		if err := l.Unlock(context.Background()); err == nil {
			released++
		}
	}
	c.loaders.Wait()
	c.background.Wait()
	s := c.sess.Swap(nil)
	if s != nil {
		s.rc.Close()
	}
	c.log.Info("cache client closed", zap.Int("locks_released", released), zap.Int("locks_held", len(locks)),
		zap.Duration("elapsed", time.Since(began)))
	return nil
}

// acquire returns the session and live settings for one call.
func (c *Client) acquire() (*session, *live, error) {
	s := c.sess.Load()
	if s == nil {
		return nil, nil, errNotStarted
	}
	return s, c.live.Load(), nil
}

// one runs a command built by build on the full key, observed and bounded,
// and returns its result; the error is already wrapped (ErrMiss for nil).
func (c *Client) one(ctx context.Context, cmd command, key string, build func(b rueidis.Builder, full string) rueidis.Completed) (rueidis.RedisResult, error) {
	s, l, err := c.acquire()
	if err != nil {
		return rueidis.RedisResult{}, wrap(cmd, key, err)
	}
	res := c.do(ctx, s, l, cmd, build(s.rc.B(), l.full(key)))
	if err := res.Error(); err != nil {
		return res, wrap(cmd, key, err)
	}
	return res, nil
}

// do sends one command: bounded by commandTimeout, timed, counted, traced.
func (c *Client) do(ctx context.Context, s *session, l *live, cmd command, rc rueidis.Completed) rueidis.RedisResult {
	start := time.Now()
	ctx, span := c.startSpan(ctx, cmd)
	callCtx, cancel := c.bound(ctx, l.timeout, start)
	res := s.rc.Do(callCtx, rc)
	cancel()
	c.observe(ctx, cmd, start, res.Error(), span)
	return res
}

// doMulti is do for several commands sent in one round trip.
func (c *Client) doMulti(ctx context.Context, s *session, l *live, cmd command, rcs []rueidis.Completed) []rueidis.RedisResult {
	start := time.Now()
	ctx, span := c.startSpan(ctx, cmd)
	callCtx, cancel := c.bound(ctx, l.timeout, start)
	res := s.rc.DoMulti(callCtx, rcs...)
	cancel()
	var err error
	for _, r := range res {
		if e := r.NonRedisError(); e != nil {
			err = e
			break
		}
	}
	c.observe(ctx, cmd, start, err, span)
	return res
}

func (c *Client) startSpan(ctx context.Context, cmd command) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	return c.tracer.Start(ctx, "cache "+commandNames[cmd], c.spanOpts[cmd]...)
}

// observe records one call's outcome and logs when Redis becomes
// unreachable or reachable again (once per transition, not per call).
func (c *Client) observe(ctx context.Context, cmd command, start time.Time, err error, span trace.Span) {
	st := classify(err)
	c.metrics.observe(ctx, cmd, st, time.Since(start))
	if span != nil {
		if st != statusOK && st != statusMiss {
			span.RecordError(err)
			span.SetStatus(codes.Error, statusNames[st])
		}
		span.End()
	}
	switch st {
	case statusTimeout:
		if ctx.Err() != nil {
			break // the caller's own deadline, not a sign of an outage
		}
		fallthrough
	case statusConnection:
		if c.down.CompareAndSwap(false, true) {
			c.log.Warn("redis unreachable; calls fail until it answers again", zap.String("command", commandNames[cmd]), zap.Error(err))
		}
	case statusOK, statusMiss:
		if c.down.Load() && c.down.CompareAndSwap(true, false) {
			c.log.Info("redis reachable again", zap.String("command", commandNames[cmd]))
		}
	}
}

func noCancel() {}

// handle passes the error an exported call returns through the error
// handler (deferred at the top of each, so every path is counted once;
// exported methods never call each other).
func (c *Client) handle(ctx context.Context, err *error) {
	if *err != nil && c.errs != nil {
		c.errs.Handle(ctx, *err)
	}
}

// sharedDeadline is a context with a deadline that calls made under a ctx
// without one (context.Background()) share for a short window, so bounding
// them costs no allocation per call: a call made in [from, until) gets a
// deadline between timeout and timeout+timeout/64 away.
type sharedDeadline struct {
	ctx     context.Context
	cancel  context.CancelFunc // never called early: calls in flight use ctx
	from    time.Time
	until   time.Time
	timeout time.Duration
}

// bound returns ctx limited to timeout from now. A ctx that already ends
// sooner is used as is; a ctx that can never be cancelled gets the shared
// deadline; any other gets its own.
func (c *Client) bound(ctx context.Context, timeout time.Duration, now time.Time) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) <= timeout {
		return ctx, noCancel
	}
	if ctx.Done() == nil {
		if d := c.shared.Load(); d != nil && d.timeout == timeout && !now.Before(d.from) && now.Before(d.until) {
			return d.ctx, noCancel
		}
		slack := max(timeout/64, time.Millisecond)
		dctx, cancel := context.WithDeadline(context.Background(), now.Add(timeout+slack))
		c.shared.Store(&sharedDeadline{ctx: dctx, cancel: cancel, from: now, until: now.Add(slack), timeout: timeout})
		return dctx, noCancel
	}
	return context.WithDeadline(ctx, now.Add(timeout))
}
