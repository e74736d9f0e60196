package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// EtcdCluster is a multi-member embedded etcd cluster for fault tests that
// need a quorum: stop or kill the leader and watch the rest elect a new one.
// Every member runs in this process on its own loopback ports and data
// directory, with the same fast raft ticks as StartEtcd, and each has its
// own client proxy, so Endpoints lead through the proxies and a member's
// Stop or Kill cuts its clients off as a crash would.
type EtcdCluster struct {
	members []*Etcd
	dir     string
}

// EtcdClusterOptions tune StartEtcdCluster.
type EtcdClusterOptions struct {
	// Size is the number of members; default 3.
	Size int
	// ReadyTimeout bounds the wait for the cluster to elect a leader and
	// serve; default 10s.
	ReadyTimeout time.Duration
}

// StartEtcdCluster starts Size members and returns once every one serves.
func StartEtcdCluster(opts EtcdClusterOptions) (*EtcdCluster, error) {
	if opts.Size <= 0 {
		opts.Size = 3
	}
	dir, err := os.MkdirTemp("", "devstack-etcd-cluster-")
	if err != nil {
		return nil, fmt.Errorf("devstack: etcd cluster dir: %w", err)
	}
	c := &EtcdCluster{dir: dir}
	// As in StartEtcd, a picked port can be taken by a parallel test
	// process before etcd binds it; start over on fresh ports then.
	for attempt := 0; ; attempt++ {
		err = c.start(opts)
		if err == nil || !isAddrInUse(err) || attempt == 9 {
			break
		}
		c.stopAll()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *EtcdCluster) start(opts EtcdClusterOptions) error {
	c.members = make([]*Etcd, opts.Size)
	peers := make([]string, opts.Size)
	for i := range c.members {
		cport, err := freePort()
		if err != nil {
			return err
		}
		pport, err := freePort()
		if err != nil {
			return err
		}
		m := &Etcd{
			name:      fmt.Sprintf("m%d", i),
			clientURL: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cport)},
			peerURL:   url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pport)},
		}
		m.dir = fmt.Sprintf("%s/%s-%d", c.dir, m.name, pport)
		c.members[i] = m
		if m.peerProxy, err = NewProxy(m.peerURL.Host); err != nil {
			return err
		}
		peers[i] = m.name + "=http://" + m.peerProxy.Addr()
	}
	initial := strings.Join(peers, ",")
	for _, m := range c.members {
		m.cluster = initial
		if err := m.launch(false); err != nil {
			return err
		}
	}
	// Members only become ready together, once they have a quorum.
	errs := make([]error, len(c.members))
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Go(func() { errs[i] = m.awaitReady(opts.ReadyTimeout) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, m := range c.members {
		p, err := NewProxy(m.clientURL.Host)
		if err != nil {
			return err
		}
		m.proxy = p
	}
	return nil
}

// Members returns the members in a fixed order.
func (c *EtcdCluster) Members() []*Etcd { return append([]*Etcd(nil), c.members...) }

// Endpoints returns every member's client URL through its proxy.
func (c *EtcdCluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.Endpoint()
	}
	return out
}

// DirectEndpoints returns every member's own client URL, bypassing the
// proxies (e.g. to build a separate, partitionable path to the cluster).
func (c *EtcdCluster) DirectEndpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.DirectEndpoint()
	}
	return out
}

// Leader waits until a running member leads and every running member agrees
// on it, and returns it.
func (c *EtcdCluster) Leader(ctx context.Context) (*Etcd, error) {
	for {
		var (
			lead   *Etcd
			leadID uint64
			agreed = true
		)
		for _, m := range c.members {
			s := m.Server()
			if s == nil {
				continue
			}
			id := uint64(s.Server.Leader())
			switch {
			case id == 0:
				agreed = false
			case leadID == 0:
				leadID = id
			case id != leadID:
				agreed = false
			}
			if id != 0 && id == uint64(s.Server.MemberID()) {
				lead = m
			}
		}
		if agreed && lead != nil && uint64(lead.Server().Server.MemberID()) == leadID {
			return lead, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("devstack: no agreed etcd leader: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *EtcdCluster) stopAll() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		if m != nil {
			wg.Go(m.Kill)
		}
	}
	wg.Wait()
}

// Close stops every member and removes the data directories.
func (c *EtcdCluster) Close() {
	// Killed at once: a graceful stop of the leader first hands leadership
	// to a member that is about to stop too.
	var wg sync.WaitGroup
	for _, m := range c.members {
		if m != nil {
			wg.Go(m.Kill)
		}
	}
	wg.Wait()
	_ = os.RemoveAll(c.dir)
}
