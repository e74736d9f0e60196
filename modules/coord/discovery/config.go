package discovery

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Config is the Registry's settings: config component "registry"
// (/config/{env}/global/registry, /config/{env}/{service}/registry). Every
// field applies live: a change is used from the next lease grant,
// re-registration attempt or request on.
type Config struct {
	// TTL of the lease behind each registration (default 10s, whole
	// seconds, at least 2s). A crashed process leaves discovery within TTL;
	// an etcd outage longer than TTL expires the lease and the Registry
	// registers again when etcd answers.
	TTL config.Duration `json:"ttl"`
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// registration attempts while etcd cannot be written (defaults 100ms and
	// 5s). There is no attempt limit.
	RetryMin config.Duration `json:"retryMin"`
	RetryMax config.Duration `json:"retryMax"`
	// RequestTimeout bounds each grant, put and revoke the Registry makes
	// (default 3s), including the deregistration at shutdown, whatever the
	// caller's ctx.
	RequestTimeout config.Duration `json:"requestTimeout"`
}

// Defaults returns the design document's defaults.
func (Config) Defaults() Config {
	return Config{
		TTL:            config.Duration(10 * time.Second),
		RetryMin:       config.Duration(100 * time.Millisecond),
		RetryMax:       config.Duration(5 * time.Second),
		RequestTimeout: config.Duration(3 * time.Second),
	}
}

// MinTTL is the shortest registration TTL: etcd counts leases in whole
// seconds, and a production cluster raises anything below about 1.5
// election timeouts anyway.
const MinTTL = 2 * time.Second

// Validate reports the first field that cannot work as a VALIDATION
// *lifecycle.InfraError naming it.
func (c Config) Validate() error {
	switch {
	case c.TTL.Std() < MinTTL:
		return lifecycle.ValidationError(RegistryComponent, "ttl", fmt.Sprintf("must be at least %s, got %s", MinTTL, c.TTL))
	case c.RetryMin <= 0:
		return lifecycle.ValidationError(RegistryComponent, "retryMin", fmt.Sprintf("must be positive, got %s", c.RetryMin))
	case c.RetryMax < c.RetryMin:
		return lifecycle.ValidationError(RegistryComponent, "retryMax", fmt.Sprintf("must be at least retryMin (%s), got %s", c.RetryMin, c.RetryMax))
	case c.RequestTimeout <= 0:
		return lifecycle.ValidationError(RegistryComponent, "requestTimeout", fmt.Sprintf("must be positive, got %s", c.RequestTimeout))
	}
	return nil
}

// ttlSeconds rounds up so a 2.5s TTL never becomes a 2s lease.
func (c Config) ttlSeconds() int64 {
	return max(int64((c.TTL.Std()+time.Second-1)/time.Second), 1)
}

// Option configures the constructors of this package.
type Option func(*options)

type options struct {
	log *zap.Logger
}

// WithLogger sets the logger (default: none). The fx module passes the
// app's logger for module "discovery".
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
		if opt != nil { // a nil Option is no option
			opt(&o)
		}
	}
	return o
}
