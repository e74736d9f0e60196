package coord

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Environment variables read by LoadConfig. The etcd connection is bootstrap
// configuration: etcd cannot tell a process where etcd is, so these come
// from the environment (or flags mapped onto it), never from the config
// center.
const (
	// EnvEndpoints is a comma-separated list of etcd client URLs,
	// e.g. "https://etcd-0:2379,https://etcd-1:2379". Required.
	EnvEndpoints = "IMINFRA_ETCD_ENDPOINTS"
	// EnvUsername and EnvPassword enable etcd authentication; both or neither.
	EnvUsername = "IMINFRA_ETCD_USERNAME"
	EnvPassword = "IMINFRA_ETCD_PASSWORD"
	// EnvTLSCA is a PEM file of CAs that sign the etcd server certificates.
	EnvTLSCA = "IMINFRA_ETCD_TLS_CA"
	// EnvTLSCert and EnvTLSKey are the client certificate and key (PEM) for
	// mutual TLS; both or neither.
	EnvTLSCert = "IMINFRA_ETCD_TLS_CERT"
	EnvTLSKey  = "IMINFRA_ETCD_TLS_KEY"
	// EnvTLSServerName overrides the name checked in the server certificate.
	EnvTLSServerName = "IMINFRA_ETCD_TLS_SERVER_NAME"
	// Durations are Go duration strings ("5s", "250ms").
	EnvDialTimeout           = "IMINFRA_ETCD_DIAL_TIMEOUT"
	EnvKeepaliveTime         = "IMINFRA_ETCD_KEEPALIVE_TIME"
	EnvKeepaliveTimeout      = "IMINFRA_ETCD_KEEPALIVE_TIMEOUT"
	EnvRequestTimeout        = "IMINFRA_ETCD_REQUEST_TIMEOUT"
	EnvProbeTimeout          = "IMINFRA_ETCD_PROBE_TIMEOUT"
	EnvReconnectBackoffMax   = "IMINFRA_ETCD_RECONNECT_BACKOFF_MAX"
	EnvRecoveryProbeInterval = "IMINFRA_ETCD_RECOVERY_PROBE_INTERVAL"
)

// Default values of Config.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultKeepaliveTime         = 10 * time.Second
	DefaultKeepaliveTimeout      = 3 * time.Second
	DefaultRequestTimeout        = 5 * time.Second
	DefaultProbeTimeout          = 3 * time.Second
	DefaultReconnectBackoffMax   = 500 * time.Millisecond
	DefaultRecoveryProbeInterval = 50 * time.Millisecond
)

// Config is how a process reaches etcd.
type Config struct {
	// Endpoints are etcd client URLs ("http://h:2379", "https://h:2379",
	// "unix:///path") or bare "host:port". At least one is required; there
	// is deliberately no localhost default, so a service outside dev never
	// talks to an etcd it was not pointed at.
	Endpoints []string `json:"endpoints"`
	// DialTimeout bounds one connection attempt (default 5s).
	DialTimeout config.Duration `json:"dialTimeout"`
	// Username and Password enable etcd authentication. The token is fetched
	// on the first request, not at construction, so a service can be built
	// while etcd is down.
	Username string        `json:"username,omitempty"`
	Password config.Secret `json:"password,omitempty"`
	// TLS is used when any of its fields is set or an endpoint is https.
	TLS TLSConfig `json:"tls"`
	// KeepaliveTime is the idle time after which the client pings the server
	// to find a dead connection (default 10s; 0 disables). gRPC raises any
	// value below 10s to 10s.
	KeepaliveTime config.Duration `json:"keepaliveTime"`
	// KeepaliveTimeout is how long a ping may go unanswered before the
	// connection is closed (default 3s).
	KeepaliveTimeout config.Duration `json:"keepaliveTimeout"`
	// RequestTimeout bounds each call made by Source and Center when the
	// caller's ctx has no earlier deadline (default 5s).
	RequestTimeout config.Duration `json:"requestTimeout"`
	// ProbeTimeout bounds the start-up and health probe that decide between
	// connected and degraded (default 3s). The probe fails at once when no
	// connection to etcd can be made (a refused port), so it only waits this
	// long for an endpoint that does not answer at all (a blackhole).
	ProbeTimeout config.Duration `json:"probeTimeout"`
	// ReconnectBackoffMax caps gRPC's reconnect backoff (default 500ms).
	// gRPC's own cap is 120s and its first retries already reach seconds, so
	// after an etcd restart a client would sit idle long after etcd answers;
	// a short cap keeps the outage as short as etcd's own.
	ReconnectBackoffMax config.Duration `json:"reconnectBackoffMax"`
	// RecoveryProbeInterval is how often, while etcd does not answer, the
	// monitor forces a reconnect and probes again (default 50ms, jittered by
	// ±20%). It bounds how long after etcd answers again the client notices
	// and wakes every config.Value waiting to reload; each attempt costs one
	// TCP connect against a down etcd.
	RecoveryProbeInterval config.Duration `json:"recoveryProbeInterval"`
}

// TLSConfig names PEM files for a TLS connection to etcd (config.TLS, read
// from the IMINFRA_ETCD_TLS_* variables).
type TLSConfig = config.TLS

// Defaults returns a Config with every default set and no endpoints.
func Defaults() Config {
	return Config{
		DialTimeout:           config.Duration(DefaultDialTimeout),
		KeepaliveTime:         config.Duration(DefaultKeepaliveTime),
		KeepaliveTimeout:      config.Duration(DefaultKeepaliveTimeout),
		RequestTimeout:        config.Duration(DefaultRequestTimeout),
		ProbeTimeout:          config.Duration(DefaultProbeTimeout),
		ReconnectBackoffMax:   config.Duration(DefaultReconnectBackoffMax),
		RecoveryProbeInterval: config.Duration(DefaultRecoveryProbeInterval),
	}
}

// LoadConfig reads the IMINFRA_ETCD_* variables through getenv (os.Getenv in
// production, a map in tests) over Defaults and validates the result. An
// unset or blank variable keeps its default.
func LoadConfig(getenv func(string) string) (Config, error) {
	cfg := Defaults()
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	if v := get(EnvEndpoints); v != "" {
		for ep := range strings.SplitSeq(v, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				cfg.Endpoints = append(cfg.Endpoints, ep)
			}
		}
	}
	cfg.Username = get(EnvUsername)
	// The password is taken verbatim: spaces may be part of it.
	cfg.Password = config.Secret(getenv(EnvPassword))
	cfg.TLS = TLSConfig{
		CAFile:     get(EnvTLSCA),
		CertFile:   get(EnvTLSCert),
		KeyFile:    get(EnvTLSKey),
		ServerName: get(EnvTLSServerName),
	}
	durations := []struct {
		env, field string
		dst        *config.Duration
	}{
		{EnvDialTimeout, "dialTimeout", &cfg.DialTimeout},
		{EnvKeepaliveTime, "keepaliveTime", &cfg.KeepaliveTime},
		{EnvKeepaliveTimeout, "keepaliveTimeout", &cfg.KeepaliveTimeout},
		{EnvRequestTimeout, "requestTimeout", &cfg.RequestTimeout},
		{EnvProbeTimeout, "probeTimeout", &cfg.ProbeTimeout},
		{EnvReconnectBackoffMax, "reconnectBackoffMax", &cfg.ReconnectBackoffMax},
		{EnvRecoveryProbeInterval, "recoveryProbeInterval", &cfg.RecoveryProbeInterval},
	}
	for _, d := range durations {
		v := get(d.env)
		if v == "" {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil {
			return Config{}, lifecycle.ValidationError(ModuleName, d.field,
				fmt.Sprintf("%s=%q is not a duration such as \"5s\" or \"250ms\"", d.env, v))
		}
		*d.dst = config.Duration(parsed)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the config without touching the network or the files it
// names (they are read by NewClient). Errors are VALIDATION InfraErrors whose
// Field is the JSON name of the offending field.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return lifecycle.ValidationError(ModuleName, "endpoints", "at least one etcd endpoint is required (set "+EnvEndpoints+")")
	}
	for i, ep := range c.Endpoints {
		if msg := checkEndpoint(ep); msg != "" {
			return lifecycle.ValidationError(ModuleName, fmt.Sprintf("endpoints[%d]", i), msg)
		}
	}
	positive := []struct {
		field string
		d     config.Duration
	}{
		{"dialTimeout", c.DialTimeout},
		{"requestTimeout", c.RequestTimeout},
		{"probeTimeout", c.ProbeTimeout},
		{"reconnectBackoffMax", c.ReconnectBackoffMax},
		{"recoveryProbeInterval", c.RecoveryProbeInterval},
	}
	for _, p := range positive {
		if p.d <= 0 {
			return lifecycle.ValidationError(ModuleName, p.field, fmt.Sprintf("must be positive, got %s", p.d))
		}
	}
	if c.KeepaliveTime < 0 {
		return lifecycle.ValidationError(ModuleName, "keepaliveTime", fmt.Sprintf("must not be negative (0 disables keepalive), got %s", c.KeepaliveTime))
	}
	if c.KeepaliveTimeout < 0 {
		return lifecycle.ValidationError(ModuleName, "keepaliveTimeout", fmt.Sprintf("must not be negative, got %s", c.KeepaliveTimeout))
	}
	// etcd needs both to authenticate; one alone is a typo, not a choice.
	if c.Username == "" && c.Password != "" {
		return lifecycle.ValidationError(ModuleName, "username", "a password is set but no username")
	}
	if c.Username != "" && c.Password == "" {
		return lifecycle.ValidationError(ModuleName, "password", "a username is set but no password")
	}
	return c.TLS.Validate(ModuleName)
}

// checkEndpoint returns why ep is not an endpoint clientv3 can dial, or "".
func checkEndpoint(ep string) string {
	if ep == "" {
		return "empty endpoint"
	}
	if !strings.Contains(ep, "://") {
		if strings.HasPrefix(ep, "unix:") || strings.HasPrefix(ep, "unixs:") {
			return ""
		}
		return checkHostPort(ep)
	}
	safe := redactEndpoint(ep)
	u, err := url.Parse(ep)
	if err != nil {
		// url's error repeats the input, which may hold a password.
		return fmt.Sprintf("%q is not a valid URL", safe)
	}
	switch u.Scheme {
	case "http", "https":
		if u.User != nil {
			return fmt.Sprintf("%q: credentials belong in %s/%s, not in the URL", safe, EnvUsername, EnvPassword)
		}
		if u.Path != "" && u.Path != "/" {
			return fmt.Sprintf("%q: an etcd endpoint has no path", safe)
		}
		return checkHostPort(u.Host)
	case "unix", "unixs":
		if u.Host == "" && u.Path == "" {
			return fmt.Sprintf("%q: missing socket path", safe)
		}
		return ""
	default:
		return fmt.Sprintf("%q: scheme must be http, https, unix or unixs", safe)
	}
}

// redactEndpoint hides the user info of an endpoint so a password typed
// into a URL never reaches an error or a log.
func redactEndpoint(ep string) string {
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok {
		return ep
	}
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = "***@" + authority[i+1:]
	}
	if path != "" || strings.Contains(rest, "/") {
		return scheme + "://" + authority + "/" + path
	}
	return scheme + "://" + authority
}

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

// Option configures NewClient.
type Option func(*options)

type options struct {
	log *zap.Logger
}

// WithLogger sets the client's logger (default: none). The fx module passes
// the app's logger for module "coord".
func WithLogger(l *zap.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

func buildOptions(opts []Option) options {
	o := options{log: zap.NewNop()}
	for _, opt := range opts {
		if opt != nil { // NewClient(cfg, nil) reads as "no options"
			opt(&o)
		}
	}
	return o
}
