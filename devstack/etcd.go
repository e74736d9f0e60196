package devstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is an embedded etcd server: a single-member cluster from StartEtcd,
// or one member of a StartEtcdCluster.
type Etcd struct {
	mu        sync.Mutex
	name      string
	dir       string
	ownDir    bool
	clientURL url.URL // where the server listens
	peerURL   url.URL
	cluster   string // initial-cluster: every member's name=peer URL
	proxy     *Proxy // what clients dial: closing it cuts them off at once
	// peerProxy, for a cluster member, is what the other members dial, so
	// that stopping the member also ends its raft connections at once
	// instead of leaving them to time out.
	peerProxy *Proxy
	srv       *embed.Etcd
}

// EtcdOptions tune StartEtcd. The zero value is fine for tests.
type EtcdOptions struct {
	// Dir is the data directory; a temporary one is made (and removed by
	// Close) when empty.
	Dir string
	// ReadyTimeout bounds the wait for the server to serve; default 10s.
	ReadyTimeout time.Duration
	// ClientAddr is where clients reach the server (the proxy in front of
	// it), e.g. "127.0.0.1:2379". Empty picks a free port. A taken address
	// fails StartEtcd with ErrAddrInUse before the server starts.
	ClientAddr string
}

// StartEtcd starts an etcd server on 127.0.0.1 with kernel-chosen ports.
func StartEtcd(opts EtcdOptions) (*Etcd, error) {
	clientAddr := opts.ClientAddr
	if clientAddr == "" {
		clientAddr = "127.0.0.1:0"
	} else if err := checkFree(clientAddr); err != nil {
		return nil, err
	}
	e := &Etcd{name: "devstack", dir: opts.Dir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "devstack-etcd-")
		if err != nil {
			return nil, fmt.Errorf("devstack: etcd data dir: %w", err)
		}
		e.dir, e.ownDir = d, true
	}
	// Ports are picked free and then bound by etcd, so another process can
	// take one in between (go test runs packages in parallel): retry with
	// fresh ports. Listening happens before etcd writes its data dir.
	var err error
	for attempt := 0; ; attempt++ {
		var cport, pport int
		if cport, err = freePort(); err != nil {
			return nil, err
		}
		if pport, err = freePort(); err != nil {
			return nil, err
		}
		e.clientURL = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cport)}
		e.peerURL = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pport)}
		e.cluster = e.name + "=" + e.peerURL.String()
		if err = e.launch(false); err == nil {
			err = e.awaitReady(opts.ReadyTimeout)
		}
		if err == nil || !isAddrInUse(err) || attempt == 9 {
			break
		}
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	if e.proxy, err = NewProxyAt(clientAddr, e.clientURL.Host); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Endpoint is the client URL, e.g. "http://127.0.0.1:40123". It leads
// through a proxy, so that Stop drops client connections the way a crash
// does instead of waiting for etcd's graceful shutdown of open watches.
func (e *Etcd) Endpoint() string { return "http://" + e.proxy.Addr() }

// DirectEndpoint is the server's own client URL, bypassing the proxy: a
// test can keep writing (and compacting) through it while Disconnect has
// cut the clients under test off.
func (e *Etcd) DirectEndpoint() string { return e.clientURL.String() }

// Disconnect drops every client connection made through Endpoint and
// refuses new ones, while the server keeps running: a network partition
// between the clients and etcd. Reconnect ends it.
func (e *Etcd) Disconnect() { e.proxy.Close() }

// Reconnect lets clients reach the server again after Disconnect.
func (e *Etcd) Reconnect() error { return e.proxy.Open() }

// Endpoints returns the client URLs, ready for clientv3.Config.
func (e *Etcd) Endpoints() []string { return []string{e.Endpoint()} }

// Blackhole stalls every client connection made through Endpoint, and
// accepts new ones without answering, while the server keeps running: a
// network partition in which packets are lost rather than refused, so
// clients only find out through their own timeouts. Reconnect heals it and
// lets the stalled bytes through, as TCP would after a short partition.
func (e *Etcd) Blackhole() { e.proxy.Blackhole() }

// Stop shuts the server down, keeping its data and ports for Restart.
// Clients lose their connections at once and cannot reconnect until Restart.
// A member of a cluster that leads hands leadership over first, as a
// graceful etcd shutdown does; Kill does not.
func (e *Etcd) Stop() { e.stop(false) }

// Kill stops the server the way a crash or a power loss would: clients are
// cut off and the member stops at once, without handing its leadership over,
// so the rest of the cluster has to notice and elect a new leader. Data and
// ports are kept for Restart.
func (e *Etcd) Kill() { e.stop(true) }

func (e *Etcd) stop(hard bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proxy != nil {
		e.proxy.Close()
	}
	if e.peerProxy != nil {
		e.peerProxy.Close()
	}
	if e.srv != nil {
		if hard {
			// Stops raft first; Close then finds nothing to hand over.
			e.srv.Server.HardStop()
		}
		e.srv.Close()
		<-e.srv.Server.StopNotify()
		e.srv = nil
	}
}

// Restart starts a stopped server again on the same ports and data. A
// cluster member waits for a quorum, so restart a majority together.
func (e *Etcd) Restart() error {
	if err := e.RestartDisconnected(); err != nil {
		return err
	}
	return e.proxy.Open()
}

// RestartDisconnected starts a stopped server again like Restart, but
// leaves its clients cut off until Reconnect: a test can write through
// DirectEndpoint first and then time how soon clients see it from the
// moment etcd answers them again.
func (e *Etcd) RestartDisconnected() error {
	if e.peerProxy != nil {
		if err := e.peerProxy.Open(); err != nil {
			return err
		}
	}
	if err := e.launch(true); err != nil {
		return err
	}
	return e.awaitReady(0)
}

// Name is the member's name in the cluster.
func (e *Etcd) Name() string { return e.name }

// IsLeader reports whether this member is running and leads its cluster.
func (e *Etcd) IsLeader() bool {
	s := e.Server()
	return s != nil && s.Server.Leader() != 0 && s.Server.Leader() == s.Server.MemberID()
}

// Running reports whether the server is serving.
func (e *Etcd) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv != nil
}

// Server returns the running embedded server (nil when stopped), for tests
// that need to compact or inspect it.
func (e *Etcd) Server() *embed.Etcd {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// Close stops the server and removes a temporary data directory.
func (e *Etcd) Close() {
	e.Stop()
	if e.ownDir {
		_ = os.RemoveAll(e.dir)
	}
}

// launch starts the server on e's ports without waiting for it to serve.
// waitForPorts retries a bind that fails because the port is still in use
// (a just-stopped server's port can linger), which Restart needs since it
// must reuse the same ports.
func (e *Etcd) launch(waitForPorts bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return nil
	}
	cfg := embed.NewConfig()
	cfg.Name = e.name
	cfg.Dir = e.dir
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.ListenClientUrls = []url.URL{e.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{e.clientURL}
	cfg.ListenPeerUrls = []url.URL{e.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{e.peerURL}
	if e.peerProxy != nil {
		cfg.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: e.peerProxy.Addr()}}
	}
	cfg.InitialCluster = e.cluster
	cfg.InitialClusterToken = "devstack-" + e.cluster
	// bcrypt's cheapest cost: dev and test users authenticate in
	// microseconds instead of the default's ~100ms (seconds under -race).
	cfg.BcryptCost = 4
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	var (
		srv *embed.Etcd
		err error
	)
	for attempt := 0; attempt < 50; attempt++ {
		srv, err = embed.StartEtcd(cfg)
		if err == nil || !isAddrInUse(err) || !waitForPorts {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("devstack: start etcd %s: %w", e.name, err)
	}
	e.srv = srv
	return nil
}

// awaitReady waits until the launched server serves clients (for a cluster
// member: until the cluster has a quorum and a leader).
func (e *Etcd) awaitReady(readyTimeout time.Duration) error {
	if readyTimeout <= 0 {
		readyTimeout = 10 * time.Second
	}
	srv := e.Server()
	if srv == nil {
		return fmt.Errorf("devstack: etcd %s is not running", e.name)
	}
	select {
	case <-srv.Server.ReadyNotify():
		return nil
	case <-time.After(readyTimeout):
		err := fmt.Errorf("devstack: etcd %s not ready after %s", e.name, readyTimeout)
		e.Stop()
		return err
	case err := <-srv.Err():
		e.Stop()
		return fmt.Errorf("devstack: etcd %s failed: %w", e.name, err)
	}
}

// WaitLeader blocks until the server has a leader or ctx ends.
func (e *Etcd) WaitLeader(ctx context.Context) error {
	for {
		if s := e.Server(); s != nil && s.Server.Leader() != 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// freePort returns a port that is free now. It is chosen below the
// kernel's ephemeral range where it can: a server restarted on its port
// (etcd, Redis) must not find it taken by a client's outgoing connection,
// and outgoing connections, like ":0" listeners, take their ports from
// that range.
func freePort() (int, error) {
	if lo := ephemeralLow(); lo > minPort {
		for range 50 {
			p := minPort + rand.IntN(lo-minPort)
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
				_ = l.Close()
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devstack: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// minPort keeps chosen ports clear of well-known and registered servers
// (Redis, MariaDB, PostgreSQL, etcd all listen below it).
const minPort = 10000

// ephemeralLow is the lowest port of the kernel's ephemeral range, or 0
// when it cannot be read (not Linux).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b)) // "32768\t60999"
	if len(fields) == 0 {
		return 0
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return n
}

// isAddrInUse matches a bind failure; the text check covers errors that
// etcd flattened with fmt.Errorf("%v").
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
