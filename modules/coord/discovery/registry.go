package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

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
// under its own lease, by one goroutine per instance that the Registry owns.
// That goroutine registers (retrying with backoff while etcd cannot be
// written), keeps the lease alive, watches the instance's own key, and
// registers again whenever the registration is lost: the lease expired or
// was revoked (an etcd outage longer than the TTL), or the key was deleted
// while the lease lives (restored under the same lease). Each loss and each
// recovery is logged, Registered is false in between, and the "registry"
// health check says degraded, so a running service never silently drops out
// of discovery.
//
// Close (or Deregister) must run before the etcd client is closed; the fx
// module does it when stopping begins (the drain) and again in OnStop.
type Registry struct {
	cli *clientv3.Client
	log *zap.Logger
	cfg atomic.Pointer[Config]

	mu      sync.Mutex
	entries map[string]*entry
	closed  bool

	wg     sync.WaitGroup // one per entry: its keeper
	reregs atomic.Int64
}

// entry is one registered instance and the state of its keeper.
type entry struct {
	inst  ServiceInstance
	key   string
	value string
	lease atomic.Int64 // clientv3.LeaseID currently holding the key; 0 if none
	rev   atomic.Int64 // revision of the last put of the key
	live  atomic.Bool  // the key is believed present and kept alive
	ctx   context.Context
	stop  context.CancelFunc
	tried chan struct{} // closed after the first registration attempt
	done  chan struct{} // closed when the keeper has exited

	stopOnce sync.Once
	stopErr  error
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

// Register validates inst and registers it: a lease of the configured TTL
// and the instance's key under it, kept alive until Deregister or Close.
// It returns nil once the instance is in etcd; or, when etcd cannot be
// written right now (down, unreachable, no leader), as soon as the first
// attempt has failed (at once when no connection can be made, within the
// request timeout otherwise), with the registration going on in the
// background: Registered is false and the health check degraded until it
// succeeds. A service that registers at start therefore starts with etcd
// down. The errors are VALIDATION for bad input or an ID already
// registered, INTERNAL after Close. ctx bounds only the wait for the first
// attempt.
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
	e := &entry{inst: inst, key: ServiceKey(inst.Name, inst.ID), value: value, tried: make(chan struct{}), done: make(chan struct{})}
	// The entry's context belongs to the Registry, not to the caller: the
	// keeper must outlive this call and stop on Deregister or Close.
	e.ctx, e.stop = context.WithCancel(context.Background())
	r.entries[inst.ID] = e
	r.wg.Add(1)
	r.mu.Unlock()

	go r.keep(e)
	select {
	case <-e.tried:
	case <-ctx.Done():
	}
	return nil
}

// Deregister removes instance id from etcd (revoking its lease) and stops
// keeping it alive. Like Close it runs on a context detached from ctx and
// bounded by the request timeout, so it works after ctx has ended. An ID
// that is not (or no longer) registered is not an error: a second
// Deregister is harmless. If etcd cannot be reached the error says so and
// the key disappears when its lease expires, at most one TTL later.
func (r *Registry) Deregister(ctx context.Context, id string) error {
	r.mu.Lock()
	e, ok := r.entries[id]
	if ok {
		delete(r.entries, id)
	}
	r.mu.Unlock()
	if !ok {
		return nil
	}
	return r.deregister(ctx, e)
}

// Close deregisters every instance, side by side, and stops all goroutines.
// It runs on a context detached from ctx and bounded by the request timeout
// (see Deregister). It is idempotent; later Register calls fail.
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

	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() { errs[i] = r.deregister(ctx, e) })
	}
	wg.Wait()
	r.wg.Wait()
	return errors.Join(errs...)
}

// Registered reports whether instance id is registered: its key is in etcd
// and its lease is being kept alive. It is false until a registration that
// went to the background succeeds, and while a lost one is being restored.
func (r *Registry) Registered(id string) bool {
	r.mu.Lock()
	e, ok := r.entries[id]
	r.mu.Unlock()
	return ok && e.live.Load()
}

// Reregistrations counts the registrations re-established after a lost
// lease or a deleted key since the Registry was made; a rising count means
// etcd outages, revoked leases or deleted keys worth looking at.
func (r *Registry) Reregistrations() int64 { return r.reregs.Load() }

// deregister stops e's keeper and revokes its lease so the key goes away
// now rather than after the TTL, on a context detached from ctx.
func (r *Registry) deregister(ctx context.Context, e *entry) error {
	e.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.config().RequestTimeout.Std())
		defer cancel()
		e.stop()
		select {
		case <-e.done:
		case <-ctx.Done():
			e.stopErr = lifecycle.TimeoutError(RegistryComponent, "deregister", ctx.Err()).WithField(e.inst.ID)
			return
		}
		e.live.Store(false)
		lease := clientv3.LeaseID(e.lease.Load())
		if lease == clientv3.NoLease {
			return
		}
		if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.log.Warn("deregister failed; the key expires with its lease",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.Error(err))
			e.stopErr = etcdError(RegistryComponent, "deregister", err)
			return
		}
		r.log.Info("service deregistered", zap.String("service", e.inst.Name), zap.String("id", e.inst.ID))
	})
	return e.stopErr
}

// failFast returns etcd's KV and lease APIs as generated clients whose calls
// fail at once when no connection to etcd can be made, instead of waiting
// for one (clientv3's default, with no per-call way to change it).
// Registration attempts use them, so an attempt against a down etcd costs
// milliseconds and the backoff, not the request timeout, paces the retries.
func (r *Registry) failFast() (pb.KVClient, pb.LeaseClient) {
	conn := r.cli.ActiveConnection()
	return pb.NewKVClient(conn), pb.NewLeaseClient(conn)
}

// put grants a fresh lease and writes e's key under it. On failure it
// revokes the lease it granted, in case the put landed before the error.
func (r *Registry) put(ctx context.Context, e *entry) (clientv3.LeaseID, error) {
	kv, leases := r.failFast()
	g, err := leases.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: r.config().ttlSeconds()}, grpc.WaitForReady(false))
	if err != nil {
		return 0, etcdError(RegistryComponent, "register", rpctypes.Error(err))
	}
	lease := clientv3.LeaseID(g.ID)
	resp, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(e.key), Value: []byte(e.value), Lease: g.ID}, grpc.WaitForReady(false))
	if err != nil {
		r.revoke(lease)
		return 0, etcdError(RegistryComponent, "register", rpctypes.Error(err))
	}
	e.rev.Store(resp.Header.Revision)
	return lease, nil
}

// restore writes e's key again under its current lease, which is alive.
func (r *Registry) restore(ctx context.Context, e *entry) error {
	kv, _ := r.failFast()
	resp, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(e.key), Value: []byte(e.value), Lease: e.lease.Load()}, grpc.WaitForReady(false))
	if err != nil {
		return rpctypes.Error(err)
	}
	e.rev.Store(resp.Header.Revision)
	return nil
}

// revoke is best-effort cleanup bounded by RequestTimeout; a lease it
// cannot revoke still expires on its own.
func (r *Registry) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.config().RequestTimeout.Std())
	defer cancel()
	_, _ = r.cli.Revoke(ctx, lease)
}

// loss says why a registration stopped holding.
type loss int

const (
	lossStopped loss = iota // Deregister, Close or the client closed
	lossLease               // the lease expired or was revoked
	lossKey                 // the key was deleted while the lease lives
)

// keep is the goroutine that owns one registration: it registers, holds,
// and whenever the registration is lost, restores it, until stopped.
func (r *Registry) keep(e *entry) {
	defer r.wg.Done()
	defer close(e.done)
	if !r.register(e, 0) {
		return
	}
	// flaps counts losses that came less than a TTL after the registration
	// before them; it carries the backoff over so a lease that is lost again
	// at once is retried at RetryMax, not re-granted ten times a second.
	flaps := 0
	for {
		began := time.Now()
		why, reason := r.hold(e)
		if e.ctx.Err() != nil {
			return
		}
		e.live.Store(false)
		if why == lossStopped || r.cli.Ctx().Err() != nil {
			// Nothing can be written once the client is closed; Close should
			// have run first, so say so loudly.
			r.log.Error("etcd client closed while the service was registered; it drops out of discovery when its lease expires",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID))
			return
		}
		if time.Since(began) < r.config().TTL.Std() {
			flaps++
		} else {
			flaps = 0
		}
		if why == lossKey {
			r.log.Warn("service key deleted while its lease lives; restoring it",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("key", e.key),
				zap.Int64("lease", e.lease.Load()))
			if r.restoreKey(e, flaps) {
				continue
			}
			if e.ctx.Err() != nil {
				return
			}
			// The lease died in the meantime: register from scratch.
		} else {
			r.log.Warn("service registration lost; re-registering",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("addr", e.inst.Addr),
				zap.Int64("lease", e.lease.Load()), zap.Error(reason))
		}
		if !r.register(e, flaps) {
			return
		}
	}
}

// hold keeps e's lease alive and watches e's key until the registration is
// lost or stopped, and says which.
func (r *Registry) hold(e *entry) (loss, error) {
	ctx, cancel := context.WithCancel(e.ctx)
	lease := clientv3.LeaseID(e.lease.Load())
	ka, err := r.cli.KeepAlive(ctx, lease)
	if err != nil {
		cancel()
		if e.ctx.Err() != nil {
			return lossStopped, nil
		}
		return lossLease, err
	}
	// The key is watched on its own goroutine: clientv3's Watch blocks until
	// etcd answers, and a lease lost during an outage must be seen while etcd
	// is still down, not when it returns.
	type outcome struct {
		why loss
		err error
	}
	watched := make(chan outcome, 1)
	go func() {
		why, err := r.watchKey(ctx, e, lease)
		watched <- outcome{why, err}
	}()
	defer func() {
		cancel()
		<-watched
	}()
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				if e.ctx.Err() != nil {
					return lossStopped, nil
				}
				// clientv3 closes the channel when the server reports the
				// lease gone or no renewal succeeded for a whole TTL.
				return lossLease, errors.New("lease keepalive stopped (lease expired or revoked)")
			}
		case o := <-watched:
			watched <- o // for the deferred wait
			return o.why, o.err
		}
	}
}

// watchKey watches e's key until it is deleted (lossKey or lossLease) or
// ctx or the client ends (lossStopped). A broken watch is read back and
// watched again after a backoff.
func (r *Registry) watchKey(ctx context.Context, e *entry, lease clientv3.LeaseID) (loss, error) {
	// Only deletes matter: a put by someone else is not ours to undo.
	from := e.rev.Load() + 1
	for attempt := 0; ; attempt++ {
		deleted := false
		wctx, wcancel := context.WithCancel(ctx) // releases a broken watch before the next
		for wr := range r.cli.Watch(wctx, e.key, clientv3.WithRev(from), clientv3.WithFilterPut()) {
			if wr.Err() != nil {
				break
			}
			attempt = 0
			if slices.ContainsFunc(wr.Events, func(ev *clientv3.Event) bool { return ev.Type == clientv3.EventTypeDelete }) {
				deleted = true
				break
			}
		}
		wcancel()
		if deleted {
			return r.deleted(ctx, e, lease)
		}
		if ctx.Err() != nil || r.cli.Ctx().Err() != nil {
			return lossStopped, nil
		}
		// Compacted past our revision, or the watch broke: look.
		gone, rev := r.keyGone(ctx, e)
		if gone {
			return r.deleted(ctx, e, lease)
		}
		if rev > 0 {
			from = rev + 1
		}
		if !r.sleep(ctx, attempt) {
			return lossStopped, nil
		}
	}
}

// deleted tells a deleted key (lease alive: restore the key) from a lost
// lease (revoked or expired: its keys went with it).
func (r *Registry) deleted(ctx context.Context, e *entry, lease clientv3.LeaseID) (loss, error) {
	rctx, cancel := context.WithTimeout(ctx, r.config().RequestTimeout.Std())
	defer cancel()
	ttl, err := r.cli.TimeToLive(rctx, lease)
	if err == nil && ttl.TTL > 0 {
		return lossKey, nil
	}
	return lossLease, errors.New("key deleted with its lease (revoked or expired)")
}

// keyGone reads e's key; gone is true when it does not exist, rev is the
// read's revision (0 when the read failed).
func (r *Registry) keyGone(ctx context.Context, e *entry) (gone bool, rev int64) {
	rctx, cancel := context.WithTimeout(ctx, r.config().RequestTimeout.Std())
	defer cancel()
	resp, err := r.cli.Get(rctx, e.key)
	if err != nil {
		return false, 0
	}
	return len(resp.Kvs) == 0, resp.Header.Revision
}

// sleep waits the backoff of attempt; false means ctx (the entry's, or a
// narrower one) or the client was shut down.
func (r *Registry) sleep(ctx context.Context, attempt int) bool {
	cfg := r.config()
	t := time.NewTimer(backoff(attempt, cfg.RetryMin.Std(), cfg.RetryMax.Std()))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-r.cli.Ctx().Done():
		return false
	case <-t.C:
		return true
	}
}

// restoreKey writes e's deleted key again under its living lease, after
// the backoff of attempt first, retrying while the lease lives. It returns
// false when the lease is gone (register again) or the entry is stopped.
func (r *Registry) restoreKey(e *entry, first int) bool {
	lost := time.Now()
	for attempt := first; ; attempt++ {
		if !r.sleep(e.ctx, attempt) {
			return false
		}
		ctx, cancel := context.WithTimeout(e.ctx, r.config().RequestTimeout.Std())
		err := r.restore(ctx, e)
		cancel()
		switch {
		case err == nil:
			e.live.Store(true)
			r.reregs.Add(1)
			r.log.Info("service key restored",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("key", e.key),
				zap.Int64("lease", e.lease.Load()), zap.Duration("down", time.Since(lost)))
			return true
		case e.ctx.Err() != nil:
			return false
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return false
		}
		r.log.Warn("restoring the service key failed; retrying",
			zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.Int("attempt", attempt-first+1), zap.Error(err))
	}
}

// register grants a lease and writes e's key under it, with jittered
// exponential backoff from attempt first and no attempt limit; the very
// first registration of an entry tries at once. It returns false only when
// the entry or the client is shut down.
func (r *Registry) register(e *entry, first int) bool {
	began := time.Now()
	initial := e.lease.Load() == 0
	old := clientv3.LeaseID(e.lease.Load())
	for attempt := first; ; attempt++ {
		if !initial || attempt > first {
			if !r.sleep(e.ctx, attempt) {
				return false
			}
		}
		ctx, cancel := context.WithTimeout(e.ctx, r.config().RequestTimeout.Std())
		lease, err := r.put(ctx, e)
		cancel()
		// Register waits for the first attempt to be over, and for its
		// outcome to be visible: Registered is true once it returns after
		// a success.
		firstTry := initial && attempt == first
		if err != nil {
			if firstTry {
				close(e.tried)
			}
			if e.ctx.Err() != nil {
				return false
			}
			if initial && attempt == first {
				r.log.Warn("service not registered: etcd cannot be written; retrying in the background",
					zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("addr", e.inst.Addr), zap.Error(err))
			} else {
				r.log.Warn("registration attempt failed; retrying",
					zap.String("service", e.inst.Name), zap.String("id", e.inst.ID),
					zap.Int("attempt", attempt-first+1), zap.Error(err))
			}
			continue
		}
		e.lease.Store(int64(lease))
		if e.ctx.Err() != nil {
			// Deregister or Close raced this attempt; deregister revokes the
			// lease it finds, which may be this one or not yet.
			r.revoke(lease)
			if firstTry {
				close(e.tried)
			}
			return false
		}
		e.live.Store(true)
		if firstTry {
			close(e.tried)
		}
		fields := []zap.Field{zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("addr", e.inst.Addr),
			zap.Int64("lease", int64(lease)), zap.Duration("ttl", time.Duration(r.config().ttlSeconds())*time.Second)}
		if initial {
			if attempt > first {
				fields = append(fields, zap.Int("attempts", attempt-first+1), zap.Duration("took", time.Since(began)))
			}
			r.log.Info("service registered", fields...)
			return true
		}
		r.reregs.Add(1)
		r.log.Info("service re-registered", append(fields, zap.Int("attempts", attempt-first+1), zap.Duration("down", time.Since(began)))...)
		// The old lease may survive on the server (a restarted leader extends
		// leases); it holds no key now, so drop it instead of letting it linger.
		if old != clientv3.NoLease && old != lease {
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

// count is the number of instances registered (live or not).
func (r *Registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}
