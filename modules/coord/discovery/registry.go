package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// ServiceKeyPrefix is where service instances live in etcd: one key per
// instance at ServiceKeyPrefix + name + "/" + id. The value is a JSON object
// that is a superset of etcd's naming/endpoints format ({"Op":0,"Addr":...,
// "Metadata":...}), so endpoints.NewManager(cli, "/services/"+name) can read
// what the Registry writes.
const ServiceKeyPrefix = "/services/"

// ServiceKey returns the etcd key of one instance of service name.
func ServiceKey(name, id string) string { return ServiceKeyPrefix + name + "/" + id }

// ServiceInstance is one running copy of a service as peers discover it.
type ServiceInstance struct {
	// ID is unique among the instances of Name (a hostname, pod name or
	// instance ID); it is the last element of the etcd key.
	ID string
	// Name is the service name, a DNS label such as "im-repo".
	Name string
	// Addr is the host:port peers dial.
	Addr string
	// Metadata is free-form data for clients (zone, version, weight).
	Metadata map[string]string
}

// Validate reports the first field that cannot be registered as a VALIDATION
// *lifecycle.InfraError naming it.
func (s ServiceInstance) Validate() error {
	if err := validateName(s.Name); err != nil {
		return err
	}
	switch {
	case s.ID == "":
		return lifecycle.ValidationError(RegistryComponent, "id", "instance ID is empty")
	case len(s.ID) > 128:
		return lifecycle.ValidationError(RegistryComponent, "id", "instance ID is longer than 128 bytes")
	}
	for _, c := range []byte(s.ID) {
		// The ID is a path element of the key; a slash would make it look
		// like another service's instance to a prefix read.
		if c == '/' || c <= ' ' || c == 0x7f {
			return lifecycle.ValidationError(RegistryComponent, "id", "instance ID must not contain '/', spaces or control characters")
		}
	}
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return lifecycle.ValidationError(RegistryComponent, "addr", "address must be host:port: "+err.Error())
	}
	if host == "" {
		return lifecycle.ValidationError(RegistryComponent, "addr", "address has no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return lifecycle.ValidationError(RegistryComponent, "addr", "port must be a number in 1..65535")
	}
	return nil
}

// validateName accepts a DNS label (RFC 1123): lower-case letters, digits
// and '-', 1..63 bytes, not starting or ending with '-'. Names end up in keys
// and in "etcd:///name" gRPC targets, so anything looser causes trouble there.
func validateName(name string) error {
	if name == "" {
		return lifecycle.ValidationError(RegistryComponent, "name", "service name is empty")
	}
	if len(name) > 63 {
		return lifecycle.ValidationError(RegistryComponent, "name", "service name is longer than 63 bytes")
	}
	for i, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(name)-1
		if !ok {
			return lifecycle.ValidationError(RegistryComponent, "name", "service name must be a DNS label: a-z, 0-9 and inner '-'")
		}
	}
	return nil
}

// record is the stored JSON. Op and the capitalised Addr/Metadata keep it
// readable by etcd's naming/endpoints package (Op 0 means "add").
type record struct {
	Op       uint8           `json:"Op"`
	Addr     string          `json:"Addr"`
	Metadata json.RawMessage `json:"Metadata,omitempty"`
	ID       string          `json:"ID,omitempty"`
	Name     string          `json:"Name,omitempty"`
}

func encode(inst ServiceInstance) (string, error) {
	rec := record{Addr: inst.Addr, ID: inst.ID, Name: inst.Name}
	if len(inst.Metadata) > 0 {
		md, err := json.Marshal(inst.Metadata)
		if err != nil {
			return "", lifecycle.InternalError(RegistryComponent, "register", "encode metadata", err)
		}
		rec.Metadata = md
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", lifecycle.InternalError(RegistryComponent, "register", "encode instance", err)
	}
	return string(b), nil
}

// decode reads a stored instance. The key, not the JSON, is authoritative
// for name and ID, so entries written by other tools (naming/endpoints) are
// still discovered; metadata that is not a string map is dropped rather than
// hiding a reachable address.
func decode(name, id string, value []byte) (ServiceInstance, error) {
	// Fast path for what the Registry writes: one pass, metadata decoded in
	// place (Discover's cost is mostly this, see BenchmarkDiscover).
	var fast struct {
		Addr     string
		Metadata map[string]string
	}
	if json.Unmarshal(value, &fast) == nil && fast.Addr != "" {
		md := fast.Metadata
		if len(md) == 0 {
			md = nil
		}
		return ServiceInstance{ID: id, Name: name, Addr: fast.Addr, Metadata: md}, nil
	}
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		return ServiceInstance{}, err
	}
	if rec.Addr == "" {
		return ServiceInstance{}, errors.New("no Addr")
	}
	inst := ServiceInstance{ID: id, Name: name, Addr: rec.Addr}
	if len(rec.Metadata) > 0 {
		var md map[string]string
		if json.Unmarshal(rec.Metadata, &md) == nil && len(md) > 0 {
			inst.Metadata = md
		}
	}
	return inst, nil
}

// Registry keeps this process's service instances registered in etcd, each
// under its own lease kept alive by a goroutine the Registry owns. When a
// lease is lost (an etcd outage longer than the TTL, a revoked lease) the
// Registry logs it and re-registers with jittered backoff until it succeeds,
// so a running service never silently drops out of discovery.
//
// Close (or Deregister) must run before the etcd client is closed; the fx
// module does it when stopping begins and again in OnStop.
type Registry struct {
	cli *clientv3.Client
	log *zap.Logger
	cfg atomic.Pointer[Config]

	mu      sync.Mutex
	entries map[string]*entry
	closed  bool

	wg     sync.WaitGroup // one per entry: its Register call, then its keeper
	reregs atomic.Int64
}

// entry is one registered instance and the state of its keeper.
type entry struct {
	inst   ServiceInstance
	key    string
	value  string
	lease  atomic.Int64 // clientv3.LeaseID currently holding the key; 0 if none
	live   atomic.Bool  // the key is believed present and kept alive
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the entry's goroutines are gone
}

// NewRegistry returns a Registry writing through cli with cfg, or a
// VALIDATION error naming the bad field of cfg. It does no I/O.
func NewRegistry(cli *clientv3.Client, cfg Config, opts ...Option) (*Registry, error) {
	if cli == nil {
		return nil, lifecycle.ValidationError(RegistryComponent, "client", "etcd client is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	r := &Registry{cli: cli, log: o.log, entries: make(map[string]*entry)}
	r.cfg.Store(&cfg)
	return r, nil
}

// config is the Registry's current settings.
func (r *Registry) config() Config { return *r.cfg.Load() }

// setConfig applies a new valid config; it is used from the next grant,
// attempt or request on.
func (r *Registry) setConfig(c Config) { r.cfg.Store(&c) }

// Register validates inst, grants a lease, writes the instance under it and
// starts keeping it alive. It returns once the instance is discoverable, or
// with the error that prevented it (VALIDATION for bad input or a duplicate
// ID, CONNECTION or TIMEOUT from etcd); ctx bounds only this first write.
func (r *Registry) Register(ctx context.Context, inst ServiceInstance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	value, err := encode(inst)
	if err != nil {
		return err
	}
	inst.Metadata = cloneMetadata(inst.Metadata)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return lifecycle.NewError(lifecycle.TypeInternal, RegistryComponent, "register", "registry is closed")
	}
	if _, dup := r.entries[inst.ID]; dup {
		r.mu.Unlock()
		return lifecycle.ValidationError(RegistryComponent, "id", "instance "+strconv.Quote(inst.ID)+" is already registered")
	}
	e := &entry{inst: inst, key: ServiceKey(inst.Name, inst.ID), value: value, done: make(chan struct{})}
	// The entry's context belongs to the Registry, not to the caller: the
	// keeper must outlive this call and stop on Deregister or Close.
	e.ctx, e.cancel = context.WithCancel(context.Background())
	// Reserving the ID before the network call keeps concurrent duplicate
	// registrations out and lets Close wait for this one.
	r.entries[inst.ID] = e
	r.wg.Add(1)
	r.mu.Unlock()

	callCtx, stop := context.WithCancel(ctx)
	unhook := context.AfterFunc(e.ctx, stop)
	lease, err := r.put(callCtx, e)
	unhook()
	stop()
	if err == nil && e.ctx.Err() != nil {
		// Deregister or Close raced this call and won.
		r.revoke(lease)
		err = lifecycle.NewError(lifecycle.TypeInternal, RegistryComponent, "register", "registration cancelled by Deregister or Close")
	}
	if err != nil {
		r.mu.Lock()
		if r.entries[inst.ID] == e {
			delete(r.entries, inst.ID)
		}
		r.mu.Unlock()
		e.cancel()
		close(e.done)
		r.wg.Done()
		return err
	}
	e.lease.Store(int64(lease))
	e.live.Store(true)
	r.log.Info("service registered",
		zap.String("service", inst.Name), zap.String("id", inst.ID), zap.String("addr", inst.Addr),
		zap.Int64("lease", int64(lease)), zap.Duration("ttl", time.Duration(r.config().ttlSeconds())*time.Second))
	go r.keep(e)
	return nil
}

// Deregister removes instance id from etcd (revoking its lease) and stops
// keeping it alive. An unknown id is a VALIDATION error. If etcd cannot be
// reached the error is returned and the key disappears when its lease
// expires, at most one TTL later.
func (r *Registry) Deregister(ctx context.Context, id string) error {
	r.mu.Lock()
	e, ok := r.entries[id]
	if ok {
		delete(r.entries, id)
	}
	r.mu.Unlock()
	if !ok {
		return lifecycle.ValidationError(RegistryComponent, "id", "instance "+strconv.Quote(id)+" is not registered")
	}
	return r.stop(ctx, e)
}

// Close deregisters every instance and stops all goroutines. It is
// idempotent; later Register calls fail. Call it before closing the client.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	entries := make([]*entry, 0, len(r.entries))
	for id, e := range r.entries {
		entries = append(entries, e)
		delete(r.entries, id)
	}
	r.mu.Unlock()

	var errs []error
	for _, e := range entries {
		if err := r.stop(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	r.wg.Wait()
	return errors.Join(errs...)
}

// Registered reports whether instance id is registered and its lease is
// being kept alive. It is false while a lost registration is being
// re-established.
func (r *Registry) Registered(id string) bool {
	r.mu.Lock()
	e, ok := r.entries[id]
	r.mu.Unlock()
	return ok && e.live.Load()
}

// Reregistrations counts the registrations re-established after a lost
// lease since the Registry was made; a rising count means etcd outages or
// revoked leases worth looking at.
func (r *Registry) Reregistrations() int64 { return r.reregs.Load() }

// stop cancels e's keeper, waits for it, then revokes the lease so the key
// goes away now rather than after the TTL.
func (r *Registry) stop(ctx context.Context, e *entry) error {
	e.cancel()
	select {
	case <-e.done:
	case <-ctx.Done():
		return lifecycle.TimeoutError(RegistryComponent, "deregister", ctx.Err()).WithField(e.inst.ID)
	}
	e.live.Store(false)
	lease := clientv3.LeaseID(e.lease.Load())
	if lease == clientv3.NoLease {
		return nil
	}
	if _, err := r.cli.Revoke(ctx, lease); err != nil {
		r.log.Warn("deregister failed; the key expires with its lease",
			zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.Error(err))
		return etcdError(RegistryComponent, "deregister", err)
	}
	r.log.Info("service deregistered", zap.String("service", e.inst.Name), zap.String("id", e.inst.ID))
	return nil
}

// put grants a fresh lease and writes e's key under it. On failure it
// revokes the lease it granted, in case the put landed before the error.
func (r *Registry) put(ctx context.Context, e *entry) (clientv3.LeaseID, error) {
	g, err := r.cli.Grant(ctx, r.config().ttlSeconds())
	if err != nil {
		return 0, etcdError(RegistryComponent, "register", err)
	}
	if _, err := r.cli.Put(ctx, e.key, e.value, clientv3.WithLease(g.ID)); err != nil {
		r.revoke(g.ID)
		return 0, etcdError(RegistryComponent, "register", err)
	}
	return g.ID, nil
}

// revoke is best-effort cleanup bounded by RequestTimeout; a lease it
// cannot revoke still expires on its own.
func (r *Registry) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.config().RequestTimeout.Std())
	defer cancel()
	_, _ = r.cli.Revoke(ctx, lease)
}

// keep is the goroutine that owns one registration: it keeps the lease
// alive and, whenever that stops, re-registers until it succeeds.
func (r *Registry) keep(e *entry) {
	defer r.wg.Done()
	defer close(e.done)
	// flaps counts losses that came less than a TTL after the registration
	// before them; it carries the backoff over so a lease that is lost again
	// at once (e.g. clientv3's keepalive loop halted for good) is retried at
	// RetryMax, not re-granted ten times a second.
	flaps := 0
	for {
		began := time.Now()
		reason := r.keepAlive(e)
		if e.ctx.Err() != nil {
			return
		}
		e.live.Store(false)
		if r.cli.Ctx().Err() != nil {
			// Nothing can be written once the client is closed; Close should
			// have run first, so say so loudly.
			r.log.Error("etcd client closed while the service was registered; it drops out of discovery when its lease expires",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID))
			return
		}
		r.log.Warn("service registration lost; re-registering",
			zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("addr", e.inst.Addr),
			zap.Int64("lease", e.lease.Load()), zap.Error(reason))
		if time.Since(began) < r.config().TTL.Std() {
			flaps++
		} else {
			flaps = 0
		}
		if !r.reregister(e, flaps) {
			return
		}
	}
}

// keepAlive blocks while e's lease is being renewed and returns why it
// stopped. clientv3 closes the channel when the server reports the lease
// gone or when no renewal succeeded for a whole TTL (an outage).
func (r *Registry) keepAlive(e *entry) error {
	ch, err := r.cli.KeepAlive(e.ctx, clientv3.LeaseID(e.lease.Load()))
	if err != nil {
		return err
	}
	for range ch {
		// Draining keeps clientv3 from warning about a full queue.
	}
	return errors.New("lease keepalive stopped (lease expired or revoked)")
}

// reregister re-grants and re-writes e's key with jittered exponential
// backoff, starting at attempt first, and no attempt limit. It returns false
// only when the entry or the client is shut down.
func (r *Registry) reregister(e *entry, first int) bool {
	lost := time.Now()
	old := clientv3.LeaseID(e.lease.Load())
	for attempt := first; ; attempt++ {
		cfg := r.config()
		t := time.NewTimer(backoff(attempt, cfg.RetryMin.Std(), cfg.RetryMax.Std()))
		select {
		case <-e.ctx.Done():
			t.Stop()
			return false
		case <-r.cli.Ctx().Done():
			t.Stop()
			return false
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(e.ctx, cfg.RequestTimeout.Std())
		lease, err := r.put(ctx, e)
		cancel()
		if err != nil {
			if e.ctx.Err() != nil {
				return false
			}
			r.log.Warn("re-registration attempt failed; retrying",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID),
				zap.Int("attempt", attempt-first+1), zap.Error(err))
			continue
		}
		e.lease.Store(int64(lease))
		e.live.Store(true)
		r.reregs.Add(1)
		r.log.Info("service re-registered",
			zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("addr", e.inst.Addr),
			zap.Int64("lease", int64(lease)), zap.Int("attempts", attempt-first+1), zap.Duration("down", time.Since(lost)))
		// The old lease may survive on the server (a restarted leader extends
		// leases); it holds no key now, so drop it instead of letting it linger.
		if old != clientv3.NoLease {
			r.revoke(old)
		}
		return true
	}
}

// backoff is exponential from lo to hi with "equal jitter" (half fixed,
// half random) so many instances recovering from one etcd outage spread out.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + rand.N(half+1)
}

func cloneMetadata(md map[string]string) map[string]string {
	if len(md) == 0 {
		return nil
	}
	c := make(map[string]string, len(md))
	for k, v := range md {
		c[k] = v
	}
	return c
}

// etcdError classifies an etcd failure of component's op: deadlines and
// cancellations are TIMEOUT, everything else CONNECTION.
func etcdError(component, op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return lifecycle.TimeoutError(component, op, err)
	}
	return lifecycle.ConnectionError(component, op, err)
}
