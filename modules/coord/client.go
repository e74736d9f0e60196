package coord

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

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
	closeOnce sync.Once
	closeErr  error
}

// NewClient builds a client for cfg without connecting: clientv3.New dials
// lazily, and authentication (which clientv3 would do here, blocking up to
// DialTimeout) is deferred to the first request. It fails only on a config
// that cannot work: invalid fields or unreadable TLS files.
func NewClient(cfg Config, log *zap.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: log}

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
		return nil, lifecycle.ConfigError(component, "endpoints", "cannot build etcd client", err)
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

// Probe asks etcd for a linearizable read, bounded by ProbeTimeout and ctx,
// and records whether it answered. A permission error counts as connected:
// the cluster answered, the user is just not allowed to read the probe key.
func (c *Client) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout.Std())
	defer cancel()
	_, err := c.raw.Get(ctx, probeKey, clientv3.WithCountOnly())
	if err != nil && errors.Is(err, rpctypes.ErrPermissionDenied) {
		err = nil
	}
	if err != nil {
		c.connected.Store(false)
		return wrapErr("probe", "", err)
	}
	c.connected.Store(true)
	return nil
}

// Close closes the etcd client; later calls return the first result. Every
// watch, lease and session built on Raw ends with it, which is why the fx
// module closes the client after everything that uses it.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.connected.Store(false)
		err := c.raw.Close()
		// clientv3 reports its own cancelled context on a clean close.
		if err != nil && !errors.Is(err, context.Canceled) {
			c.closeErr = lifecycle.WrapError(lifecycle.TypeConnection, component, "close", err, "closing etcd client")
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
	if errors.Is(err, context.DeadlineExceeded) {
		typ, msg = lifecycle.TypeTimeout, "etcd did not answer in time"
	}
	e := lifecycle.WrapError(typ, component, op, err, msg)
	e.Field = key
	return e
}

// tlsConfig loads the TLS files, or returns nil when TLS is not configured
// (https endpoints then use the system roots, as clientv3 does).
func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS.Enabled() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, lifecycle.ConfigError(component, "tls.caFile", "cannot read CA file", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, lifecycle.ConfigError(component, "tls.caFile", fmt.Sprintf("%s holds no PEM certificate", c.TLS.CAFile), nil)
		}
		tc.RootCAs = pool
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, lifecycle.ConfigError(component, "tls.certFile", "cannot load client certificate and key", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
