package devstack

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// EnvTestKafka is a comma-separated list of the brokers of a real Kafka
// cluster for tests. Unset, tests run on kfake: there is no Kafka broker on
// the project's machines, and kfake is the Kafka the tests are written
// against.
const EnvTestKafka = "IMINFRA_TEST_KAFKA_BROKERS"

// TestKafkaBrokers returns the brokers EnvTestKafka names, provided each
// accepts a TCP connection within a second; nil and no error when the
// variable is unset.
func TestKafkaBrokers() ([]string, error) {
	env := os.Getenv(EnvTestKafka)
	if env == "" {
		return nil, nil
	}
	brokers := strings.Split(env, ",")
	for _, b := range brokers {
		c, err := net.DialTimeout("tcp", b, time.Second)
		if err != nil {
			return nil, fmt.Errorf("devstack: kafka broker %s (%s) does not answer: %w", b, EnvTestKafka, err)
		}
		_ = c.Close()
	}
	return brokers, nil
}

// Kafka is an in-process Kafka cluster (franz-go's kfake) that speaks the
// Kafka protocol on real loopback TCP ports, with consumer groups,
// idempotent and transactional producers, SASL, and fault injection
// through Cluster.
type Kafka struct {
	opts KafkaOptions

	mu      sync.Mutex
	dir     string
	ownDir  bool
	ports   []int
	cluster *kfake.Cluster
}

// KafkaUser is a SASL user of the cluster.
type KafkaUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	User      string
	Password  string
}

// KafkaOptions tune StartKafka. The zero value is one broker with no
// authentication and nothing on disk.
type KafkaOptions struct {
	// Brokers is the number of brokers; default 1. Use 3 to exercise
	// leader moves, coordinator moves and broker loss.
	Brokers int
	// DataDir makes the cluster persist its state (topics, records,
	// committed offsets) there, so Stop and Restart keep it. A temporary
	// directory, removed by Close, is used when Persist is set and DataDir
	// is empty.
	DataDir string
	Persist bool
	// GroupMinSessionTimeout lowers the smallest group session timeout the
	// brokers accept (Kafka's group.min.session.timeout.ms, default 6s),
	// so tests can let a dead consumer expire quickly.
	GroupMinSessionTimeout time.Duration
	// Users enables SASL with these users; empty means no authentication.
	Users []KafkaUser
	// Extra are further kfake options (broker configs, seed topics, ...).
	Extra []kfake.Opt
}

// StartKafka starts a cluster on 127.0.0.1 with kernel-chosen ports.
func StartKafka(opts KafkaOptions) (*Kafka, error) {
	if opts.Brokers <= 0 {
		opts.Brokers = 1
	}
	k := &Kafka{opts: opts, dir: opts.DataDir}
	if k.dir == "" && opts.Persist {
		d, err := os.MkdirTemp("", "devstack-kafka-")
		if err != nil {
			return nil, fmt.Errorf("devstack: kafka data dir: %w", err)
		}
		k.dir, k.ownDir = d, true
	}
	c, err := kfake.NewCluster(k.kfakeOptions(kfake.NumBrokers(opts.Brokers))...)
	if err != nil {
		k.removeDir()
		return nil, fmt.Errorf("devstack: start kafka: %w", err)
	}
	k.cluster = c
	for _, a := range c.ListenAddrs() {
		_, p, _ := net.SplitHostPort(a)
		port, _ := strconv.Atoi(p)
		k.ports = append(k.ports, port)
	}
	return k, nil
}

func (k *Kafka) kfakeOptions(extra ...kfake.Opt) []kfake.Opt {
	opts := []kfake.Opt{kfake.ListenFn(listenDroppingConns)}
	if k.dir != "" {
		opts = append(opts, kfake.DataDir(k.dir))
	}
	if k.opts.GroupMinSessionTimeout > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(k.opts.GroupMinSessionTimeout))
	}
	if len(k.opts.Users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range k.opts.Users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.User, u.Password))
		}
	}
	opts = append(opts, extra...)
	return append(opts, k.opts.Extra...)
}

// Addrs are the brokers' host:port addresses, for a client's seed brokers.
// They stay the same across Stop and Restart.
func (k *Kafka) Addrs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	addrs := make([]string, len(k.ports))
	for i, p := range k.ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return addrs
}

// Cluster is the running kfake cluster, for fault injection (ControlKey,
// ShufflePartitionLeaders, MoveTopicPartition, RehashCoordinators,
// RemoveNode/AddNode). It is nil while stopped and a new value after
// Restart. A broker removed with RemoveNode drops its client connections,
// as a crashed broker would.
func (k *Kafka) Cluster() *kfake.Cluster {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cluster
}

// Stop shuts the cluster down; with a data directory its state is written
// there first. Client connections drop at once.
func (k *Kafka) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		k.cluster.Close()
		k.cluster = nil
	}
}

// Restart starts a stopped cluster again on the same ports, reloading its
// state from the data directory. Without one there is no state to keep,
// so Restart refuses.
func (k *Kafka) Restart() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dir == "" {
		return errors.New("devstack: kafka restart needs a data directory (KafkaOptions.DataDir or Persist)")
	}
	if k.cluster != nil {
		return nil
	}
	var err error
	// A just-closed port can linger for a moment: retry the bind briefly.
	for range 100 {
		var c *kfake.Cluster
		if c, err = kfake.NewCluster(k.kfakeOptions(kfake.Ports(k.ports...))...); err == nil {
			k.cluster = c
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("devstack: restart kafka: %w", err)
}

// Close stops the cluster and removes a temporary data directory.
func (k *Kafka) Close() {
	k.Stop()
	k.removeDir()
}

func (k *Kafka) removeDir() {
	if k.ownDir {
		_ = os.RemoveAll(k.dir)
	}
}

// listenDroppingConns is kfake's listener with one change: closing it
// (Cluster.Close, RemoveNode) also closes the connections it accepted.
// kfake alone keeps serving them, which no dead broker does.
func listenDroppingConns(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &droppingListener{Listener: ln, conns: map[net.Conn]struct{}{}}, nil
}

type droppingListener struct {
	net.Listener

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

func (l *droppingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *droppingListener) Close() error {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.(*trackedConn).Conn.Close()
	}
	return l.Listener.Close()
}

type trackedConn struct {
	net.Conn
	l    *droppingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
