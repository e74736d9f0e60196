package coord

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
	if err := regValidateName(s.Name); err != nil {
		return err
	}
	switch {
	case s.ID == "":
		return lifecycle.ValidationError(component, "id", "instance ID is empty")
	case len(s.ID) > 128:
		return lifecycle.ValidationError(component, "id", "instance ID is longer than 128 bytes")
	}
	for _, c := range []byte(s.ID) {
		// The ID is a path element of the key; a slash would make it look
		// like another service's instance to a prefix read.
		if c == '/' || c <= ' ' || c == 0x7f {
			return lifecycle.ValidationError(component, "id", "instance ID must not contain '/', spaces or control characters")
		}
	}
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return lifecycle.ValidationError(component, "addr", "address must be host:port: "+err.Error())
	}
	if host == "" {
		return lifecycle.ValidationError(component, "addr", "address has no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return lifecycle.ValidationError(component, "addr", "port must be a number in 1..65535")
	}
	return nil
}

// regValidateName accepts a DNS label (RFC 1123): lower-case letters, digits
// and '-', 1..63 bytes, not starting or ending with '-'. Names end up in keys
// and in "etcd:///name" gRPC targets, so anything looser causes trouble there.
func regValidateName(name string) error {
	if name == "" {
		return lifecycle.ValidationError(component, "name", "service name is empty")
	}
	if len(name) > 63 {
		return lifecycle.ValidationError(component, "name", "service name is longer than 63 bytes")
	}
	for i, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(name)-1
		if !ok {
			return lifecycle.ValidationError(component, "name", "service name must be a DNS label: a-z, 0-9 and inner '-'")
		}
	}
	return nil
}

// regRecord is the stored JSON. Op and the capitalised Addr/Metadata keep it
// readable by etcd's naming/endpoints package (Op 0 means "add").
type regRecord struct {
	Op       uint8           `json:"Op"`
	Addr     string          `json:"Addr"`
	Metadata json.RawMessage `json:"Metadata,omitempty"`
	ID       string          `json:"ID,omitempty"`
	Name     string          `json:"Name,omitempty"`
}

func regEncode(inst ServiceInstance) (string, error) {
	rec := regRecord{Addr: inst.Addr, ID: inst.ID, Name: inst.Name}
	if len(inst.Metadata) > 0 {
		md, err := json.Marshal(inst.Metadata)
		if err != nil {
			return "", lifecycle.InternalError(component, "register", "encode metadata", err)
		}
		rec.Metadata = md
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", lifecycle.InternalError(component, "register", "encode instance", err)
	}
	return string(b), nil
}

// regDecode reads a stored instance. The key, not the JSON, is authoritative
// for name and ID, so entries written by other tools (naming/endpoints) are
// still discovered; metadata that is not a string map is dropped rather than
// hiding a reachable address.
func regDecode(name, id string, value []byte) (ServiceInstance, error) {
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
	var rec regRecord
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

// RegistryOptions tune a Registry. The zero value gives the defaults.
type RegistryOptions struct {
	// TTL of the lease behind each registration; default 10s, rounded up to
	// whole seconds (etcd's unit). A crashed process disappears from
	// discovery after at most TTL; an etcd outage longer than TTL expires the
	// lease and triggers re-registration.
	TTL time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// re-registration attempts; defaults 100ms and 5s. There is no retry
	// limit: a live process keeps trying until it is deregistered or closed.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds each grant/put/revoke the Registry issues on its
	// own (re-registration, cleanup); default 3s. Register, Deregister and
	// Close use their caller's ctx instead.
	RequestTimeout time.Duration
}

func (o RegistryOptions) regNormalize() RegistryOptions {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 3 * time.Second
	}
	return o
}

// regTTLSeconds rounds up so a 1.5s TTL never becomes a 1s lease.
func (o RegistryOptions) regTTLSeconds() int64 {
	s := int64((o.TTL + time.Second - 1) / time.Second)
	return max(s, 1)
}

// Registry keeps this process's service instances registered in etcd, each
// under its own lease kept alive by a goroutine the Registry owns. When a
// lease is lost (an etcd outage longer than the TTL, a revoked lease) the
// Registry logs it and re-registers with jittered backoff until it succeeds,
// so a running service never silently drops out of discovery.
//
// Close (or Deregister) must run before the etcd client is closed; the coord
// module does it in OnStop.
type Registry struct {
	cli  *clientv3.Client
	log  *zap.Logger
	opts RegistryOptions

	mu      sync.Mutex
	entries map[string]*regEntry
	closed  bool

	wg     sync.WaitGroup // one per entry: its Register call, then its keeper
	reregs atomic.Int64
}

// regEntry is one registered instance and the state of its keeper.
type regEntry struct {
	inst   ServiceInstance
	key    string
	value  string
	lease  atomic.Int64 // clientv3.LeaseID currently holding the key; 0 if none
	live   atomic.Bool  // the key is believed present and kept alive
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the entry's goroutines are gone
}

// NewRegistry returns a Registry writing through cli. It does no I/O.
func NewRegistry(cli *clientv3.Client, log *zap.Logger, opts RegistryOptions) *Registry {
	if log == nil {
		log = zap.NewNop()
	}
	return &Registry{
		cli:     cli,
		log:     log,
		opts:    opts.regNormalize(),
		entries: make(map[string]*regEntry),
	}
}

// Register validates inst, grants a lease, writes the instance under it and
// starts keeping it alive. It returns once the instance is discoverable, or
// with the error that prevented it (VALIDATION for bad input or a duplicate
// ID, CONNECTION or TIMEOUT from etcd); ctx bounds only this first write.
func (r *Registry) Register(ctx context.Context, inst ServiceInstance) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	value, err := regEncode(inst)
	if err != nil {
		return err
	}
	inst.Metadata = regCloneMetadata(inst.Metadata)

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return lifecycle.NewError(lifecycle.TypeInternal, component, "register", "registry is closed")
	}
	if _, dup := r.entries[inst.ID]; dup {
		r.mu.Unlock()
		return lifecycle.ValidationError(component, "id", "instance "+strconv.Quote(inst.ID)+" is already registered")
	}
	e := &regEntry{inst: inst, key: ServiceKey(inst.Name, inst.ID), value: value, done: make(chan struct{})}
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
	lease, err := r.regPut(callCtx, e)
	unhook()
	stop()
	if err == nil && e.ctx.Err() != nil {
		// Deregister or Close raced this call and won.
		r.regRevoke(lease)
		err = lifecycle.NewError(lifecycle.TypeInternal, component, "register", "registration cancelled by Deregister or Close")
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
	r.log.Info("coord: service registered",
		zap.String("service", inst.Name), zap.String("id", inst.ID), zap.String("addr", inst.Addr),
		zap.Int64("lease", int64(lease)), zap.Duration("ttl", time.Duration(r.opts.regTTLSeconds())*time.Second))
	go r.regKeep(e)
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
		return lifecycle.ValidationError(component, "id", "instance "+strconv.Quote(id)+" is not registered")
	}
	return r.regStop(ctx, e)
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
	entries := make([]*regEntry, 0, len(r.entries))
	for id, e := range r.entries {
		entries = append(entries, e)
		delete(r.entries, id)
	}
	r.mu.Unlock()

	var errs []error
	for _, e := range entries {
		if err := r.regStop(ctx, e); err != nil {
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

// regStop cancels e's keeper, waits for it, then revokes the lease so the key
// goes away now rather than after the TTL.
func (r *Registry) regStop(ctx context.Context, e *regEntry) error {
	e.cancel()
	select {
	case <-e.done:
	case <-ctx.Done():
		return lifecycle.TimeoutError(component, "deregister", ctx.Err()).WithField(e.inst.ID)
	}
	e.live.Store(false)
	lease := clientv3.LeaseID(e.lease.Load())
	if lease == clientv3.NoLease {
		return nil
	}
	if _, err := r.cli.Revoke(ctx, lease); err != nil {
		r.log.Warn("coord: deregister failed; the key expires with its lease",
			zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.Error(err))
		return regEtcdError("deregister", err)
	}
	r.log.Info("coord: service deregistered", zap.String("service", e.inst.Name), zap.String("id", e.inst.ID))
	return nil
}

// regPut grants a fresh lease and writes e's key under it. On failure it
// revokes the lease it granted, in case the put landed before the error.
func (r *Registry) regPut(ctx context.Context, e *regEntry) (clientv3.LeaseID, error) {
	g, err := r.cli.Grant(ctx, r.opts.regTTLSeconds())
	if err != nil {
		return 0, regEtcdError("register", err)
	}
	if _, err := r.cli.Put(ctx, e.key, e.value, clientv3.WithLease(g.ID)); err != nil {
		r.regRevoke(g.ID)
		return 0, regEtcdError("register", err)
	}
	return g.ID, nil
}

// regRevoke is best-effort cleanup bounded by RequestTimeout; a lease it
// cannot revoke still expires on its own.
func (r *Registry) regRevoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.RequestTimeout)
	defer cancel()
	_, _ = r.cli.Revoke(ctx, lease)
}

// regKeep is the goroutine that owns one registration: it keeps the lease
// alive and, whenever that stops, re-registers until it succeeds.
func (r *Registry) regKeep(e *regEntry) {
	defer r.wg.Done()
	defer close(e.done)
	// flaps counts losses that came less than a TTL after the registration
	// before them; it carries the backoff over so a lease that is lost again
	// at once (e.g. clientv3's keepalive loop halted for good) is retried at
	// RetryMax, not re-granted ten times a second.
	flaps := 0
	for {
		began := time.Now()
		reason := r.regKeepAlive(e)
		if e.ctx.Err() != nil {
			return
		}
		e.live.Store(false)
		if r.cli.Ctx().Err() != nil {
			// Nothing can be written once the client is closed; Close should
			// have run first, so say so loudly.
			r.log.Error("coord: etcd client closed while the service was registered; it drops out of discovery when its lease expires",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID))
			return
		}
		r.log.Warn("coord: service registration lost; re-registering",
			zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("addr", e.inst.Addr),
			zap.Int64("lease", e.lease.Load()), zap.Error(reason))
		if time.Since(began) < r.opts.TTL {
			flaps++
		} else {
			flaps = 0
		}
		if !r.regRecover(e, flaps) {
			return
		}
	}
}

// regKeepAlive blocks while e's lease is being renewed and returns why it
// stopped. clientv3 closes the channel when the server reports the lease
// gone or when no renewal succeeded for a whole TTL (an outage).
func (r *Registry) regKeepAlive(e *regEntry) error {
	ch, err := r.cli.KeepAlive(e.ctx, clientv3.LeaseID(e.lease.Load()))
	if err != nil {
		return err
	}
	for range ch {
		// Draining keeps clientv3 from warning about a full queue.
	}
	return errors.New("lease keepalive stopped (lease expired or revoked)")
}

// regRecover re-grants and re-writes e's key with jittered exponential
// backoff, starting at attempt first, and no attempt limit. It returns false
// only when the entry or the client is shut down.
func (r *Registry) regRecover(e *regEntry, first int) bool {
	lost := time.Now()
	old := clientv3.LeaseID(e.lease.Load())
	for attempt := first; ; attempt++ {
		t := time.NewTimer(regBackoff(attempt, r.opts.RetryMin, r.opts.RetryMax))
		select {
		case <-e.ctx.Done():
			t.Stop()
			return false
		case <-r.cli.Ctx().Done():
			t.Stop()
			return false
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(e.ctx, r.opts.RequestTimeout)
		lease, err := r.regPut(ctx, e)
		cancel()
		if err != nil {
			if e.ctx.Err() != nil {
				return false
			}
			r.log.Warn("coord: re-registration attempt failed; retrying",
				zap.String("service", e.inst.Name), zap.String("id", e.inst.ID),
				zap.Int("attempt", attempt-first+1), zap.Error(err))
			continue
		}
		e.lease.Store(int64(lease))
		e.live.Store(true)
		r.reregs.Add(1)
		r.log.Info("coord: service re-registered",
			zap.String("service", e.inst.Name), zap.String("id", e.inst.ID), zap.String("addr", e.inst.Addr),
			zap.Int64("lease", int64(lease)), zap.Int("attempts", attempt-first+1), zap.Duration("down", time.Since(lost)))
		// The old lease may survive on the server (a restarted leader extends
		// leases); it holds no key now, so drop it instead of letting it linger.
		if old != clientv3.NoLease {
			r.regRevoke(old)
		}
		return true
	}
}

// regBackoff is exponential from lo to hi with "equal jitter" (half fixed,
// half random) so many instances recovering from one etcd outage spread out.
func regBackoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + rand.N(half+1)
}

func regCloneMetadata(md map[string]string) map[string]string {
	if len(md) == 0 {
		return nil
	}
	c := make(map[string]string, len(md))
	for k, v := range md {
		c[k] = v
	}
	return c
}

// regEtcdError classifies an etcd failure: deadlines and cancellations are
// TIMEOUT, everything else CONNECTION.
func regEtcdError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return lifecycle.TimeoutError(component, op, err)
	}
	return lifecycle.ConnectionError(component, op, err)
}
