package locking

import (
	"context"
	"errors"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// Elector makes the elections of one process: NewElection(name) for each
// thing only one instance may do at a time ("scheduler", "compactor"). The
// fx module provides it, since election names are per use; its elections
// share the module's config (prefix at start, TTL and release timeout
// live) and are closed, resigning, when the app stops.
type Elector struct {
	cli   *clientv3.Client
	log   *zap.Logger
	cfg   *settings
	start Config // the config at start: the prefix of new elections

	mu        sync.Mutex
	elections map[*Election]struct{}
	closed    bool
}

// NewElector returns an Elector on cli with the election settings of cfg,
// or a VALIDATION error naming the bad field. It does no I/O.
func NewElector(cli *clientv3.Client, cfg Config, opts ...Option) (*Elector, error) {
	if cli == nil {
		return nil, lifecycle.ValidationError(ModuleName, "client", "etcd client is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Elector{cli: cli, log: buildOptions(opts).log, cfg: newSettings(cfg), start: cfg,
		elections: make(map[*Election]struct{})}, nil
}

// NewElection returns a candidate for the election called name (keys under
// the configured election prefix + name + "/"). It does no I/O. Close the
// election when done with it; the Elector's Close closes those still open.
func (el *Elector) NewElection(name string) (*Election, error) {
	if err := validateName("name", name); err != nil {
		return nil, err
	}
	el.mu.Lock()
	defer el.mu.Unlock()
	if el.closed {
		return nil, lifecycle.NewError(lifecycle.TypeValidation, ModuleName, "election.new", "elector is closed")
	}
	e := newElection(el.cli, name, el.start, el.cfg, el.log)
	e.onClose = func() {
		el.mu.Lock()
		delete(el.elections, e)
		el.mu.Unlock()
	}
	el.elections[e] = struct{}{}
	return e, nil
}

// Close closes every election still open, side by side (each resigns if it
// leads, see Election.Close); later NewElection calls fail. It is
// idempotent.
func (el *Elector) Close(ctx context.Context) error {
	el.mu.Lock()
	el.closed = true
	open := make([]*Election, 0, len(el.elections))
	for e := range el.elections {
		open = append(open, e)
	}
	el.mu.Unlock()
	errs := make([]error, len(open))
	var wg sync.WaitGroup
	for i, e := range open {
		wg.Go(func() { errs[i] = e.Close(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// configure sets the config the fx module loaded: prefixes (fixed from then
// on) and the live fields.
func (el *Elector) configure(c Config) {
	el.mu.Lock()
	el.start = c
	el.mu.Unlock()
	el.cfg.set(c)
}
