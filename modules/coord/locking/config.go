package locking

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Defaults of Config.
const (
	DefaultLockPrefix     = "/locks/"
	DefaultElectionPrefix = "/elections/"
	DefaultElectionTTL    = 10 * time.Second
	// DefaultIDMax fits a 10-bit snowflake worker ID (0 stays unused so a
	// zero value is never mistaken for an allocated ID).
	DefaultIDMax = 1023
	// DefaultIDTTL is how long an ID outlives a silent holder.
	DefaultIDTTL          = 10 * time.Second
	DefaultReleaseTimeout = 3 * time.Second
	// maxIDLimit bounds IDs.Max: every AcquireID lists the held IDs.
	maxIDLimit = 1 << 16
)

// Config is the settings of locks, elections and instance IDs: config
// component "locking" (/config/{env}/global/locking,
// /config/{env}/{service}/locking). Prefixes and the ID range need a
// restart (instances that disagree on them would not exclude each other);
// TTLs and the release timeout apply live, from the next acquire, campaign
// or release on.
type Config struct {
	Locks    LocksConfig    `json:"locks"`
	Election ElectionConfig `json:"election"`
	IDs      IDsConfig      `json:"ids"`
	// ReleaseTimeout bounds every release: Unlock, Resign, ID Release,
	// Locker/Election/IDAllocator Close and the cleanup of a cancelled
	// wait (default 3s). A release runs on a context detached from the
	// caller's, so `defer lock.Unlock(reqCtx)` still releases after reqCtx
	// timed out; if etcd does not answer within ReleaseTimeout, the key
	// expires with its lease instead.
	ReleaseTimeout config.Duration `json:"releaseTimeout"`
}

// LocksConfig is the "locks" section.
type LocksConfig struct {
	// Prefix is the etcd key prefix of all locks (default "/locks/"). A lock
	// named k lives under Prefix+k+"/", the layout of etcd's
	// concurrency.Mutex. Restart.
	Prefix string `json:"prefix"`
}

// ElectionConfig is the "election" section.
type ElectionConfig struct {
	// Prefix is the etcd key prefix of all elections (default
	// "/elections/"), the layout of etcd's concurrency.Election. Restart.
	Prefix string `json:"prefix"`
	// TTL is how long a leader survives going silent (default 10s, at least
	// MinTTL). Live: used from the next campaign.
	TTL config.Duration `json:"ttl"`
}

// IDsConfig is the "ids" section.
type IDsConfig struct {
	// Prefix is the etcd key prefix of the ID space; ID n lives at
	// Prefix+n. Empty (the default) means "/ids/{service}/". Restart.
	Prefix string `json:"prefix,omitempty"`
	// Max is the largest ID handed out; IDs are 1..Max (default 1023).
	// Restart.
	Max int `json:"max"`
	// TTL is how long an ID outlives a silent holder (default 10s, at least
	// MinTTL). Live: used from the next AcquireID.
	TTL config.Duration `json:"ttl"`
}

// Defaults returns the design document's defaults.
func (Config) Defaults() Config {
	return Config{
		Locks:          LocksConfig{Prefix: DefaultLockPrefix},
		Election:       ElectionConfig{Prefix: DefaultElectionPrefix, TTL: config.Duration(DefaultElectionTTL)},
		IDs:            IDsConfig{Max: DefaultIDMax, TTL: config.Duration(DefaultIDTTL)},
		ReleaseTimeout: config.Duration(DefaultReleaseTimeout),
	}
}

// Validate reports the first field that cannot work as a VALIDATION
// *lifecycle.InfraError naming it.
func (c Config) Validate() error {
	if err := checkPrefix("locks.prefix", c.Locks.Prefix, false); err != nil {
		return err
	}
	if err := checkPrefix("election.prefix", c.Election.Prefix, false); err != nil {
		return err
	}
	if err := checkPrefix("ids.prefix", c.IDs.Prefix, true); err != nil {
		return err
	}
	if err := validateTTL("election.ttl", c.Election.TTL.Std()); err != nil {
		return err
	}
	if err := validateTTL("ids.ttl", c.IDs.TTL.Std()); err != nil {
		return err
	}
	if c.IDs.Max < 1 || c.IDs.Max > maxIDLimit {
		return lifecycle.ValidationError(ModuleName, "ids.max", fmt.Sprintf("must be between 1 and %d, got %d", maxIDLimit, c.IDs.Max))
	}
	if c.ReleaseTimeout <= 0 {
		return lifecycle.ValidationError(ModuleName, "releaseTimeout", fmt.Sprintf("must be positive, got %s", c.ReleaseTimeout))
	}
	return nil
}

func checkPrefix(field, prefix string, emptyOK bool) error {
	switch {
	case prefix == "" && emptyOK:
		return nil
	case !strings.HasPrefix(prefix, "/"):
		return lifecycle.ValidationError(ModuleName, field, fmt.Sprintf("%q must start with '/'", prefix))
	}
	return nil
}

// normalizePrefix makes a valid prefix end in "/", so that "/locks" and
// "/locks/" name the same keys.
func normalizePrefix(prefix string) string {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix
}

// Option configures the constructors of this package.
type Option func(*options)

type options struct {
	log    *zap.Logger
	holder string
}

// WithLogger sets the logger (default: none). The fx module passes the
// app's logger for module "locking".
func WithLogger(l *zap.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithHolder sets what IDAllocator writes as the value of an ID's key, so
// operators can see who holds it (default "hostname:pid"; the fx module
// uses the instance name).
func WithHolder(holder string) Option {
	return func(o *options) { o.holder = holder }
}

func buildOptions(opts []Option) options {
	o := options{log: zap.NewNop()}
	for _, opt := range opts {
		if opt != nil { // a nil Option is no option
			opt(&o)
		}
	}
	if o.holder == "" {
		host, _ := os.Hostname()
		o.holder = host + ":" + strconv.Itoa(os.Getpid())
	}
	return o
}

// settings is the live Config of a Locker, an IDAllocator or an Elector and
// its elections: the fx module stores each valid change, and the fields that
// apply live are read from it at each use.
type settings struct{ p atomic.Pointer[Config] }

func newSettings(c Config) *settings {
	s := &settings{}
	s.p.Store(&c)
	return s
}

func (s *settings) get() Config  { return *s.p.Load() }
func (s *settings) set(c Config) { s.p.Store(&c) }
