package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is an embedded single-member etcd server.
type Etcd struct {
	mu        sync.Mutex
	dir       string
	ownDir    bool
	clientURL url.URL // where the server listens
	peerURL   url.URL
	proxy     *Proxy // what clients dial: closing it cuts them off at once
	srv       *embed.Etcd
}

// EtcdOptions tune StartEtcd. The zero value is fine for tests.
type EtcdOptions struct {
	// Dir is the data directory; a temporary one is made (and removed by
	// Close) when empty.
	Dir string
	// ReadyTimeout bounds the wait for the server to serve; default 10s.
	ReadyTimeout time.Duration
}

// StartEtcd starts an etcd server on 127.0.0.1 with kernel-chosen ports.
func StartEtcd(opts EtcdOptions) (*Etcd, error) {
	e := &Etcd{dir: opts.Dir}
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
		err = e.start(opts.ReadyTimeout, false)
		if err == nil || !isAddrInUse(err) || attempt == 9 {
			break
		}
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	if e.proxy, err = NewProxy(e.clientURL.Host); err != nil {
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

// Stop shuts the server down, keeping its data and ports for Restart.
// Clients lose their connections at once and cannot reconnect until Restart.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proxy != nil {
		e.proxy.Close()
	}
	if e.srv != nil {
		e.srv.Close()
		<-e.srv.Server.StopNotify()
		e.srv = nil
	}
}

// Restart starts a stopped server again on the same ports and data.
func (e *Etcd) Restart() error {
	if err := e.start(0, true); err != nil {
		return err
	}
	return e.proxy.Open()
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

// start runs the server on e's ports. waitForPorts retries a bind that
// fails because the port is still in use (a just-stopped server's port can
// linger), which Restart needs since it must reuse the same ports.
func (e *Etcd) start(readyTimeout time.Duration, waitForPorts bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return nil
	}
	if readyTimeout <= 0 {
		readyTimeout = 10 * time.Second
	}
	cfg := embed.NewConfig()
	cfg.Name = "devstack"
	cfg.Dir = e.dir
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.ListenClientUrls = []url.URL{e.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{e.clientURL}
	cfg.ListenPeerUrls = []url.URL{e.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{e.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
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
		return fmt.Errorf("devstack: start etcd: %w", err)
	}
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(readyTimeout):
		srv.Close()
		return fmt.Errorf("devstack: etcd not ready after %s", readyTimeout)
	case err := <-srv.Err():
		srv.Close()
		return fmt.Errorf("devstack: etcd failed: %w", err)
	}
	e.srv = srv
	return nil
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devstack: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// isAddrInUse matches a bind failure; the text check covers errors that
// etcd flattened with fmt.Errorf("%v").
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
