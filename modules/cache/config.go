package cache

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Deployment modes of Config.Mode.
const (
	// ModeStandalone talks to one Redis server (Addresses has one entry).
	ModeStandalone = "standalone"
	// ModeSentinel finds the master through Sentinels (Addresses are the
	// Sentinels) and follows failovers.
	ModeSentinel = "sentinel"
	// ModeCluster talks to a Redis Cluster (Addresses are seed nodes).
	ModeCluster = "cluster"
)

// Defaults of Config, from the design document's Redis section where it
// names one (pool of 10, 5 idle, 5s connect timeout, 5 min local cache,
// 1 h Redis TTL).
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultReadTimeout      = 3 * time.Second
	DefaultWriteTimeout     = 3 * time.Second
	DefaultCommandTimeout   = time.Second
	DefaultTTL              = time.Hour
	DefaultLoadTimeout      = 10 * time.Second
	DefaultPoolSize         = 10
	DefaultPoolMinIdle      = 5
	DefaultPoolIdleTimeout  = 5 * time.Minute
	DefaultLocalCacheTTL    = 5 * time.Minute
	DefaultLocalCacheBytes  = 16 << 20
	DefaultSentinelRefresh  = 5 * time.Second
	maxPipelineMultiplex    = 8
	maxRingScale            = 16
	defaultRueidisRingScale = 10
)

// Config is the "cache" component's configuration, read from
// /config/{env}/global/cache and /config/{env}/{service}/cache.
// Which fields apply live and which need a restart is listed in README.md;
// UpdateConfig applies the live ones and logs the others.
type Config struct {
	// Mode is standalone, sentinel or cluster (default standalone).
	Mode string `json:"mode"`
	// Addresses are host:port pairs: the server (standalone, exactly one),
	// the Sentinels (sentinel) or seed nodes (cluster). Required; there is
	// no default so that a service never talks to a Redis it was not
	// pointed at.
	Addresses []string `json:"addresses"`
	// Sentinel applies in sentinel mode.
	Sentinel SentinelConfig `json:"sentinel"`
	// Username is the ACL user (empty: the default user).
	Username string `json:"username,omitempty"`
	// Password may be written as "${ENV_VAR}" to be read from the
	// environment. It never appears in logs or errors.
	Password config.Secret `json:"password,omitempty"`
	// DB is the database number (SELECT); must be 0 in cluster mode.
	DB int `json:"db"`
	// DialTimeout bounds each connection attempt (default 5s).
	DialTimeout config.Duration `json:"dialTimeout"`
	// ReadTimeout and WriteTimeout bound how long a connection may wait for
	// the server before it is considered dead and replaced (defaults 3s).
	// rueidis has one such deadline per connection (ConnWriteTimeout,
	// which covers both directions and its background PINGs); it is set to
	// the larger of the two.
	ReadTimeout  config.Duration `json:"readTimeout"`
	WriteTimeout config.Duration `json:"writeTimeout"`
	// CommandTimeout bounds every call when the caller's ctx has no earlier
	// deadline, including context.Background() (default 1s).
	CommandTimeout config.Duration `json:"commandTimeout"`
	// KeyPrefix is prepended to every key, e.g. "im-logic:", so services
	// sharing a Redis do not collide (default ""). It must not contain
	// '{' or '}', which would change the hash slot of keys in a cluster.
	KeyPrefix string `json:"keyPrefix"`
	// DefaultTTL is the Redis TTL of values that GetOrLoad stores when
	// called with ttl 0 (default 1h).
	DefaultTTL config.Duration `json:"defaultTTL"`
	// LoadTimeout bounds a GetOrLoad loader and how long its claim on a key
	// blocks other loaders (default 10s).
	LoadTimeout config.Duration `json:"loadTimeout"`
	// Pool tunes connections.
	Pool PoolConfig `json:"pool"`
	// ClientCache tunes the client-side (in-memory) cache.
	ClientCache ClientCacheConfig `json:"clientCache"`
	// TLS encrypts connections to Redis (and to Sentinels).
	TLS TLSConfig `json:"tls"`
}

// SentinelConfig locates the master through Sentinel.
type SentinelConfig struct {
	// MasterName is the monitored master set name. Required in sentinel
	// mode, refused in the others.
	MasterName string `json:"masterName,omitempty"`
	// Username and Password authenticate to the Sentinels, if they need it.
	Username string        `json:"username,omitempty"`
	Password config.Secret `json:"password,omitempty"`
	// RefreshInterval re-reads the topology from the Sentinels
	// periodically, in addition to the +switch-master events they publish,
	// so a missed event cannot pin the client to a demoted master
	// (default 5s; 0 disables).
	RefreshInterval config.Duration `json:"refreshInterval"`
}

// PoolConfig tunes connections. Ordinary commands share a few pipelined
// connections per node (auto-pipelining); the pool below serves blocking
// commands and Client().Dedicated.
type PoolConfig struct {
	// Size is the largest number of pooled connections per node
	// (rueidis BlockingPoolSize; default 10).
	Size int `json:"size"`
	// MinIdle is how many idle pooled connections are kept when idle ones
	// are cleaned up (BlockingPoolMinSize; default 5).
	MinIdle int `json:"minIdle"`
	// IdleTimeout is how often idle pooled connections above MinIdle are
	// closed (BlockingPoolCleanup; default 5m; 0 keeps them).
	IdleTimeout config.Duration `json:"idleTimeout"`
	// PipelineMultiplex is log2 of the pipelined connections per node
	// (PipelineMultiplex): 0 lets rueidis choose (up to 4 in standalone and
	// sentinel mode, by GOMAXPROCS; 1 per node in a cluster), -1 forces
	// one, at most 8.
	PipelineMultiplex int `json:"pipelineMultiplex"`
	// RingScale is log2 of each connection's queue of in-flight commands
	// (RingScaleEachConn; 0 means rueidis' 10, i.e. 1024; 1..16).
	RingScale int `json:"ringScale"`
	// MaxFlushDelay lets a connection wait up to this long to batch more
	// commands into one write (MaxFlushDelay; default 0). ~20µs trades a
	// little latency for far fewer syscalls under load.
	MaxFlushDelay config.Duration `json:"maxFlushDelay"`
}

// ClientCacheConfig tunes server-assisted client-side caching (RESP3
// CLIENT TRACKING), which GetCached and GetOrLoad read through.
type ClientCacheConfig struct {
	// Disabled turns client-side caching off: GetCached reads from Redis.
	Disabled bool `json:"disabled,omitempty"`
	// SizePerConn is the memory budget in bytes of each connection's cache
	// (CacheSizeEachConn; default 16 MiB; rueidis' own default is 128 MiB).
	SizePerConn int `json:"sizePerConn"`
	// TTL is the longest a value stays in memory when GetCached is called
	// with ttl 0, and for GetOrLoad (default 5m). Redis invalidates it
	// earlier when the key changes.
	TTL config.Duration `json:"ttl"`
}

// TLSConfig encrypts connections (config.TLS, written under "tls").
type TLSConfig = config.TLS

// Defaults returns the defaults; Addresses is empty and must be set.
func (Config) Defaults() Config {
	return Config{
		Mode:           ModeStandalone,
		DialTimeout:    config.Duration(DefaultDialTimeout),
		ReadTimeout:    config.Duration(DefaultReadTimeout),
		WriteTimeout:   config.Duration(DefaultWriteTimeout),
		CommandTimeout: config.Duration(DefaultCommandTimeout),
		DefaultTTL:     config.Duration(DefaultTTL),
		LoadTimeout:    config.Duration(DefaultLoadTimeout),
		Sentinel:       SentinelConfig{RefreshInterval: config.Duration(DefaultSentinelRefresh)},
		Pool: PoolConfig{
			Size:        DefaultPoolSize,
			MinIdle:     DefaultPoolMinIdle,
			IdleTimeout: config.Duration(DefaultPoolIdleTimeout),
		},
		ClientCache: ClientCacheConfig{
			SizePerConn: DefaultLocalCacheBytes,
			TTL:         config.Duration(DefaultLocalCacheTTL),
		},
	}
}

// Validate checks the config without touching the network or the files it
// names. Errors are VALIDATION InfraErrors whose Field is the JSON path.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeStandalone, ModeSentinel, ModeCluster:
	default:
		return invalid("mode", fmt.Sprintf("%q is not one of standalone, sentinel, cluster", c.Mode))
	}
	if len(c.Addresses) == 0 {
		return invalid("addresses", "at least one Redis address (host:port) is required")
	}
	for i, a := range c.Addresses {
		if msg := checkHostPort(a); msg != "" {
			return invalid(fmt.Sprintf("addresses[%d]", i), msg)
		}
	}
	if c.Mode == ModeStandalone && len(c.Addresses) != 1 {
		return invalid("addresses", fmt.Sprintf("standalone mode takes one address, got %d; use mode sentinel or cluster for several", len(c.Addresses)))
	}
	if c.Mode == ModeSentinel && c.Sentinel.MasterName == "" {
		return invalid("sentinel.masterName", "required in sentinel mode")
	}
	if c.Mode != ModeSentinel && c.Sentinel.MasterName != "" {
		return invalid("sentinel.masterName", fmt.Sprintf("set, but mode is %s; set mode to sentinel or remove it", c.Mode))
	}
	if c.DB < 0 {
		return invalid("db", fmt.Sprintf("must not be negative, got %d", c.DB))
	}
	if c.Mode == ModeCluster && c.DB != 0 {
		return invalid("db", fmt.Sprintf("Redis Cluster has only db 0, got %d", c.DB))
	}
	positive := []struct {
		field string
		d     config.Duration
	}{
		{"dialTimeout", c.DialTimeout},
		{"readTimeout", c.ReadTimeout},
		{"writeTimeout", c.WriteTimeout},
		{"commandTimeout", c.CommandTimeout},
		{"defaultTTL", c.DefaultTTL},
		{"loadTimeout", c.LoadTimeout},
		{"clientCache.ttl", c.ClientCache.TTL},
	}
	for _, p := range positive {
		if p.d <= 0 {
			return invalid(p.field, fmt.Sprintf("must be positive, got %s", p.d))
		}
	}
	nonNegative := []struct {
		field string
		d     config.Duration
	}{
		{"sentinel.refreshInterval", c.Sentinel.RefreshInterval},
		{"pool.idleTimeout", c.Pool.IdleTimeout},
		{"pool.maxFlushDelay", c.Pool.MaxFlushDelay},
	}
	for _, p := range nonNegative {
		if p.d < 0 {
			return invalid(p.field, fmt.Sprintf("must not be negative, got %s", p.d))
		}
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		return invalid("keyPrefix", fmt.Sprintf("%q contains '{' or '}', which would change the hash slot of every key; put hash tags in keys instead", c.KeyPrefix))
	}
	if c.Pool.Size < 1 {
		return invalid("pool.size", fmt.Sprintf("must be at least 1, got %d", c.Pool.Size))
	}
	if c.Pool.MinIdle < 0 || c.Pool.MinIdle > c.Pool.Size {
		return invalid("pool.minIdle", fmt.Sprintf("must be between 0 and pool.size (%d), got %d", c.Pool.Size, c.Pool.MinIdle))
	}
	if c.Pool.PipelineMultiplex < -1 || c.Pool.PipelineMultiplex > maxPipelineMultiplex {
		return invalid("pool.pipelineMultiplex", fmt.Sprintf("must be between -1 and %d, got %d", maxPipelineMultiplex, c.Pool.PipelineMultiplex))
	}
	if c.Pool.RingScale < 0 || c.Pool.RingScale > maxRingScale {
		return invalid("pool.ringScale", fmt.Sprintf("must be between 0 (rueidis default %d) and %d, got %d", defaultRueidisRingScale, maxRingScale, c.Pool.RingScale))
	}
	if c.ClientCache.SizePerConn < 1 {
		return invalid("clientCache.sizePerConn", fmt.Sprintf("must be a positive number of bytes, got %d", c.ClientCache.SizePerConn))
	}
	if err := c.TLS.Validate(ModuleName); err != nil {
		return err
	}
	return nil
}

func invalid(field, msg string) error { return lifecycle.ValidationError(ModuleName, field, msg) }

func checkHostPort(hp string) string {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Sprintf("%q: want host:port", hp)
	}
	if host == "" {
		return fmt.Sprintf("%q: missing host", hp)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q: port must be 1-65535", hp)
	}
	return ""
}

// connTimeout is the one per-connection deadline rueidis has.
func (c Config) connTimeout() time.Duration {
	return max(c.ReadTimeout.Std(), c.WriteTimeout.Std())
}

// restartFields lists the fields that differ between a and b and only take
// effect when the client is rebuilt. Secrets are compared, never shown.
func restartFields(a, b Config) []string {
	var out []string
	add := func(changed bool, name string) {
		if changed {
			out = append(out, name)
		}
	}
	add(a.Mode != b.Mode, "mode")
	add(strings.Join(a.Addresses, ",") != strings.Join(b.Addresses, ","), "addresses")
	add(a.Sentinel.MasterName != b.Sentinel.MasterName, "sentinel.masterName")
	add(a.Sentinel.Username != b.Sentinel.Username, "sentinel.username")
	add(a.Sentinel.Password != b.Sentinel.Password, "sentinel.password")
	add(a.Sentinel.RefreshInterval != b.Sentinel.RefreshInterval, "sentinel.refreshInterval")
	add(a.Username != b.Username, "username")
	add(a.Password != b.Password, "password")
	add(a.DB != b.DB, "db")
	add(a.DialTimeout != b.DialTimeout, "dialTimeout")
	add(a.ReadTimeout != b.ReadTimeout, "readTimeout")
	add(a.WriteTimeout != b.WriteTimeout, "writeTimeout")
	add(a.Pool.Size != b.Pool.Size, "pool.size")
	add(a.Pool.MinIdle != b.Pool.MinIdle, "pool.minIdle")
	add(a.Pool.IdleTimeout != b.Pool.IdleTimeout, "pool.idleTimeout")
	add(a.Pool.PipelineMultiplex != b.Pool.PipelineMultiplex, "pool.pipelineMultiplex")
	add(a.Pool.RingScale != b.Pool.RingScale, "pool.ringScale")
	add(a.Pool.MaxFlushDelay != b.Pool.MaxFlushDelay, "pool.maxFlushDelay")
	add(a.ClientCache.Disabled != b.ClientCache.Disabled, "clientCache.disabled")
	add(a.ClientCache.SizePerConn != b.ClientCache.SizePerConn, "clientCache.sizePerConn")
	add(a.TLS.Enabled != b.TLS.Enabled, "tls.enabled")
	add(a.TLS.CAFile != b.TLS.CAFile, "tls.caFile")
	add(a.TLS.CertFile != b.TLS.CertFile, "tls.certFile")
	add(a.TLS.KeyFile != b.TLS.KeyFile, "tls.keyFile")
	add(a.TLS.ServerName != b.TLS.ServerName, "tls.serverName")
	add(a.TLS.InsecureSkipVerify != b.TLS.InsecureSkipVerify, "tls.insecureSkipVerify")
	return out
}
