package coord

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/gochat/im-infra/lifecycle"
)

// reconnectBaseDelay is the first gRPC reconnect delay. gRPC's default (1s,
// growing 1.6x) leaves a client idle for seconds after etcd is back; 50ms
// costs little against a server that is down and a lot less against one
// that has just come back.
const reconnectBaseDelay = 50 * time.Millisecond

// probeKey is read by Probe, as `etcdctl endpoint health` does: a
// linearizable read proves a leader and a quorum without writing.
const probeKey = "health"

// Client owns the process's connection to etcd. It is built without touching
// the network (phase 1); Probe decides whether etcd answers (phase 2).
// Everything else in coord shares it, and it is closed last.
type Client struct {
	cfg  Config
	log  *zap.Logger
	raw  *clientv3.Client
	auth *tokenAuth // nil without a username

	connected atomic.Bool
	probed    atomic.Bool // a probe has finished: Connected is a fact, not a default
	lastErr   atomic.Pointer[error]

	// recovered is closed, and replaced, each time a probe finds etcd
	// answering after one that did not (see Recovered); lostCh is closed
	// when a probe finds etcd not answering, and replaced when it answers
	// again (see lost).
	stateMu   sync.Mutex
	recovered chan struct{}
	lostCh    chan struct{}

	monitorOnce sync.Once
	stopMonitor context.CancelFunc
	monitorDone chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// healthyProbeInterval is how often the monitor re-checks an etcd that
// answers; an outage is then noticed within this (plus ProbeTimeout if etcd
// went silent rather than away).
const healthyProbeInterval = 2 * time.Second

// NewClient builds a client for cfg without connecting: clientv3.New dials
// lazily, and authentication (which clientv3 would do here, blocking up to
// DialTimeout) is deferred to the first request. It fails only on a config
// that cannot work: invalid fields or unreadable TLS files.
func NewClient(cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := buildOptions(opts).log
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: log, recovered: make(chan struct{}), lostCh: make(chan struct{})}

	backoffMax := cfg.ReconnectBackoffMax.Std()
	base := min(reconnectBaseDelay, backoffMax)
	dialOpts := []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  base,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   backoffMax,
			},
			MinConnectTimeout: cfg.DialTimeout.Std(),
		}),
	}
	if cfg.Username != "" {
		c.auth = &tokenAuth{user: cfg.Username, pass: cfg.Password.Reveal(), sem: make(chan struct{}, 1)}
		dialOpts = append(dialOpts,
			grpc.WithPerRPCCredentials(c.auth),
			// Chained, not set: clientv3 installs its own retry
			// interceptors with WithUnaryInterceptor, which a second
			// WithUnaryInterceptor would silently replace.
			grpc.WithChainUnaryInterceptor(c.auth.unaryInterceptor),
			grpc.WithChainStreamInterceptor(c.auth.streamInterceptor),
		)
	}

	raw, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout.Std(),
		DialKeepAliveTime:    cfg.KeepaliveTime.Std(),
		DialKeepAliveTimeout: cfg.KeepaliveTimeout.Std(),
		TLS:                  tlsCfg,
		DialOptions:          dialOpts,
		// clientv3 logs every retried RPC at warn level, which floods the
		// log during an outage that coord already reports once (and in
		// health); keep its errors only.
		Logger: log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	})
	if err != nil {
		return nil, lifecycle.ConfigError(ModuleName, "endpoints", "cannot build etcd client", err)
	}
	c.raw = raw
	if c.auth != nil {
		c.auth.cli = raw
	}
	return c, nil
}

// Raw returns the underlying etcd client for anything coord does not wrap.
// It stays owned by Client: do not close it.
func (c *Client) Raw() *clientv3.Client { return c.raw }

// Config returns the config the client was built with.
func (c *Client) Config() Config { return c.cfg }

// Endpoints returns the configured endpoints.
func (c *Client) Endpoints() []string { return append([]string(nil), c.cfg.Endpoints...) }

// Connected reports the result of the last Probe (false before the first).
func (c *Client) Connected() bool { return c.connected.Load() }

// Unreachable reports that the last probe failed, so callers that would
// otherwise wait out a request timeout (config loads at boot) can fail fast
// and leave the retrying to the monitor.
func (c *Client) Unreachable() bool { return c.probed.Load() && !c.connected.Load() }

// LastError is the last probe's error, or nil.
func (c *Client) LastError() error {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Start probes etcd once and starts the monitor that keeps Connected
// current. While etcd answers, the monitor probes every 2s and at once when
// the connection breaks. While it does not, the monitor forces gRPC to
// reconnect every RecoveryProbeInterval (rather than after gRPC's own
// backoff) and probes as soon as a connection is up, so a returning etcd is
// noticed within milliseconds of accepting connections and Recovered wakes
// whoever waits for it. The probe's error is returned for logging; the
// client keeps working either way.
func (c *Client) Start(ctx context.Context) error {
	err := c.Probe(ctx)
	c.monitorOnce.Do(func() {
		mctx, cancel := context.WithCancel(context.Background())
		c.stopMonitor, c.monitorDone = cancel, make(chan struct{})
		go c.monitor(mctx)
	})
	return err
}

func (c *Client) monitor(ctx context.Context) {
	defer close(c.monitorDone)
	conn := c.raw.ActiveConnection()
	var down time.Time
	for {
		was := c.connected.Load()
		if was {
			// Probe every 2s, and at once when the connection breaks:
			// a crashed or restarted etcd is noticed in milliseconds.
			began := time.Now()
			if !c.waitState(ctx, conn, healthyProbeInterval, func(s connectivity.State) bool { return s != connectivity.Ready }) {
				return
			}
			// A connection that breaks over and over must not make the
			// monitor spin.
			if !sleepCtx(ctx, c.cfg.RecoveryProbeInterval.Std()-time.Since(began)) {
				return
			}
		} else {
			// gRPC would retry only after its own backoff (up to
			// ReconnectBackoffMax), and a fail-fast probe does not dial:
			// force an attempt, and probe as soon as it connects, or after
			// the interval (±20%, so many clients do not probe in step).
			conn.ResetConnectBackoff()
			iv := c.cfg.RecoveryProbeInterval.Std()
			if !c.waitState(ctx, conn, iv*4/5+rand.N(iv*2/5+1), func(s connectivity.State) bool { return s == connectivity.Ready }) {
				return
			}
		}
		err := c.Probe(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case was && err != nil:
			down = time.Now()
			c.log.Warn("etcd stopped answering; running on the last good config", zap.Error(err))
		case !was && err == nil:
			fields := []zap.Field{zap.Strings("endpoints", c.safeEndpoints())}
			if !down.IsZero() {
				fields = append(fields, zap.Duration("down", time.Since(down)))
			}
			c.log.Info("etcd answers again", fields...)
		}
	}
}

// waitState waits until the connection's state satisfies done or d has
// passed; false means ctx ended.
func (c *Client) waitState(ctx context.Context, conn *grpc.ClientConn, d time.Duration, done func(connectivity.State) bool) bool {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for st := conn.GetState(); !done(st); st = conn.GetState() {
		if st == connectivity.Idle {
			conn.Connect()
		}
		if !conn.WaitForStateChange(wctx, st) {
			break
		}
	}
	return ctx.Err() == nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Recovered returns a channel that is closed the next time a probe finds
// etcd answering after one that did not (config.RecoveryNotifier). A
// config.Value waiting to reload selects on it, so it reloads as soon as
// etcd is back instead of sleeping out its own backoff.
func (c *Client) Recovered() <-chan struct{} {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.recovered
}

// lost returns a channel that is closed while the monitor considers etcd
// unreachable: at once if it does now, else when a probe next fails.
// Source.Watch ends on it, so the Values reload (woken by Recovered) rather
// than wait for clientv3 to resume their watches after its own backoff.
func (c *Client) lost() <-chan struct{} {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.lostCh
}

// Probe asks etcd for a linearizable read, bounded by ProbeTimeout and ctx,
// and records whether it answered. It does not wait for a connection: when
// none can be made (a refused port, every endpoint down) it fails at once,
// so a service whose etcd is down starts in milliseconds; an endpoint that
// accepts but never answers is still bounded by ProbeTimeout. A permission
// error counts as connected: the cluster answered, the user is just not
// allowed to read the probe key.
func (c *Client) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout.Std())
	defer cancel()
	// The generated client, not clientv3's KV: clientv3 waits for a ready
	// connection (grpc.WaitForReady(true)) on every call and offers no way
	// to change that per call.
	_, err := pb.NewKVClient(c.raw.ActiveConnection()).Range(ctx,
		&pb.RangeRequest{Key: []byte(probeKey), CountOnly: true}, grpc.WaitForReady(false))
	if err != nil {
		err = rpctypes.Error(err)
		c.noteErr(err)
	}
	if err != nil && errors.Is(err, rpctypes.ErrPermissionDenied) {
		err = nil
	}
	if err != nil {
		err = wrapErr("probe", "", err)
		c.lastErr.Store(&err)
		c.stateMu.Lock()
		c.connected.Store(false)
		select {
		case <-c.lostCh:
		default:
			close(c.lostCh)
		}
		c.stateMu.Unlock()
		c.probed.Store(true)
		return err
	}
	c.lastErr.Store(nil)
	c.stateMu.Lock()
	if !c.connected.Swap(true) {
		close(c.recovered)
		c.recovered = make(chan struct{})
		select {
		case <-c.lostCh:
			c.lostCh = make(chan struct{})
		default:
		}
	}
	c.stateMu.Unlock()
	c.probed.Store(true)
	return nil
}

// Close closes the etcd client; later calls return the first result. Every
// watch, lease and session built on Raw ends with it, which is why the fx
// module closes the client after everything that uses it.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if c.stopMonitor != nil {
			c.stopMonitor()
			<-c.monitorDone
		}
		c.connected.Store(false)
		err := c.raw.Close()
		// clientv3 reports its own cancelled context on a clean close.
		if err != nil && !errors.Is(err, context.Canceled) {
			c.closeErr = lifecycle.WrapError(lifecycle.TypeConnection, ModuleName, "close", err, "closing etcd client")
		}
	})
	return c.closeErr
}

// requestCtx bounds a call by RequestTimeout unless ctx ends sooner.
func (c *Client) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.RequestTimeout.Std())
}

// noteErr lets the token cache see an error that reached coord through a
// path the interceptors do not cover (a cancelled watch).
func (c *Client) noteErr(err error) {
	if c.auth != nil {
		c.auth.observe(err)
	}
}

// wrapErr turns an etcd error into an InfraError naming op and key:
// TIMEOUT for an expired deadline, CONNECTION otherwise.
func wrapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	typ := lifecycle.TypeConnection
	msg := "etcd request failed"
	switch {
	case errors.Is(rpctypes.Error(err), rpctypes.ErrAuthFailed) ||
		// Our token fetch fails inside gRPC's per-RPC credentials, which
		// flattens etcd's error into an Unauthenticated status message.
		(status.Code(err) == codes.Unauthenticated && strings.Contains(err.Error(), rpctypes.ErrorDesc(rpctypes.ErrGRPCAuthFailed))):
		// Retrying will not help: the username or password is wrong.
		typ, msg = lifecycle.TypeConfig, "etcd rejected the credentials"
	case errors.Is(err, context.DeadlineExceeded):
		typ, msg = lifecycle.TypeTimeout, "etcd did not answer in time"
	}
	e := lifecycle.WrapError(typ, ModuleName, op, err, msg)
	e.Field = key
	return e
}

// tlsConfig loads the TLS files, or returns nil when TLS is not configured
// (https endpoints then use the system roots, as clientv3 does).
func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS.On() {
		return nil, nil
	}
	return c.TLS.ClientConfig(ModuleName)
}

// authenticateMethod is the one RPC that must go out without a token.
const authenticateMethod = "/etcdserverpb.Auth/Authenticate"

// tokenAuth attaches an etcd auth token to every RPC, fetching it on first
// use. clientv3 does the same but fetches in New, blocking construction for
// up to DialTimeout and failing it when etcd is down; a service must be able
// to start degraded, so the fetch moves to the first request, which carries
// its own deadline.
type tokenAuth struct {
	user, pass string
	cli        *clientv3.Client
	sem        chan struct{} // one Authenticate in flight; waiters honour their ctx

	mu       sync.RWMutex
	token    string
	disabled bool // the cluster runs without auth: send no token
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (a *tokenAuth) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ri, ok := credentials.RequestInfoFromContext(ctx); ok && ri.Method == authenticateMethod {
		return nil, nil
	}
	tok, err := a.get(ctx)
	if err != nil || tok == "" {
		return nil, err
	}
	return map[string]string{rpctypes.TokenFieldNameGRPC: tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials; etcd
// accepts tokens over plaintext (dev clusters), as clientv3 does.
func (a *tokenAuth) RequireTransportSecurity() bool { return false }

func (a *tokenAuth) cached() (string, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.token, a.token != "" || a.disabled
}

func (a *tokenAuth) get(ctx context.Context) (string, error) {
	if tok, ok := a.cached(); ok {
		return tok, nil
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-a.sem }()
	if tok, ok := a.cached(); ok { // fetched by the caller we waited for
		return tok, nil
	}
	resp, err := a.cli.Authenticate(ctx, a.user, a.pass)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case errors.Is(err, rpctypes.ErrAuthNotEnabled):
		a.disabled = true
		return "", nil
	case err != nil:
		// etcd's message never contains the password; say whose login failed.
		return "", fmt.Errorf("etcd authentication as %q: %w", a.user, err)
	}
	a.token = resp.Token
	return a.token, nil
}

// observe drops the cached token when etcd says it is no longer good
// (expired simple token, auth revision moved, auth enabled after start), so
// the next request authenticates again.
// It reports whether it did.
func (a *tokenAuth) observe(err error) bool {
	if err == nil {
		return false
	}
	e := rpctypes.Error(err)
	if !errors.Is(e, rpctypes.ErrInvalidAuthToken) && !errors.Is(e, rpctypes.ErrAuthOldRevision) && !errors.Is(e, rpctypes.ErrUserEmpty) {
		return false
	}
	a.mu.Lock()
	a.token, a.disabled = "", false
	a.mu.Unlock()
	return true
}

// unaryInterceptor retries a call once with a fresh token when the old one
// was refused.
func (a *tokenAuth) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil || method == authenticateMethod {
		return err
	}
	if a.observe(err) {
		err = invoker(ctx, method, req, reply, cc, opts...)
	}
	return err
}

// streamInterceptor watches stream errors for a refused token; the stream's
// owner (clientv3's watcher, keepalive loop) reopens it.
func (a *tokenAuth) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		a.observe(err)
		return nil, err
	}
	return &observedStream{ClientStream: s, auth: a}, nil
}

type observedStream struct {
	grpc.ClientStream
	auth *tokenAuth
}

func (s *observedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.auth.observe(err)
	}
	return err
}

// safeEndpoints lists the endpoints with any user info masked, for health
// details and logs.
func (c *Client) safeEndpoints() []string {
	out := make([]string, len(c.cfg.Endpoints))
	for i, ep := range c.cfg.Endpoints {
		out[i] = redactEndpoint(ep)
	}
	return out
}
