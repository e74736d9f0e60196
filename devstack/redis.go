package devstack

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Environment variables that point tests at real servers.
const (
	// EnvTestRedis is the host:port of the Redis tests use; when unset,
	// 127.0.0.1:6379 is used if it answers.
	EnvTestRedis = "IMINFRA_TEST_REDIS"
)

// DefaultTestRedis is the Redis tests use when EnvTestRedis is unset.
const DefaultTestRedis = "127.0.0.1:6379"

// ErrNoRedisServer is returned when a helper needs the redis-server (or
// redis-cli) binary and PATH has none.
var ErrNoRedisServer = errors.New("devstack: redis-server or redis-cli is not on PATH")

// TestRedisAddr returns the real Redis tests should use: EnvTestRedis, or
// DefaultTestRedis when the variable is unset, provided it answers PING
// within a second. Otherwise it returns "" and the reason. The server is
// shared with other test processes: use a key prefix of your own and never
// flush it.
func TestRedisAddr() (string, error) {
	addr := os.Getenv(EnvTestRedis)
	if addr == "" {
		addr = DefaultTestRedis
	}
	if err := pingRedis(addr, "", time.Second); err != nil {
		return "", fmt.Errorf("devstack: redis at %s (%s) does not answer: %w", addr, EnvTestRedis, err)
	}
	return addr, nil
}

// RedisOptions tune StartRedis. The zero value is fine for tests.
type RedisOptions struct {
	// Password sets requirepass (the default user's password).
	Password string
	// Args are extra redis-server arguments, e.g. {"--maxmemory", "10mb"}.
	// They need redis-server: with Args set, StartRedis does not fall back
	// to miniredis.
	Args []string
	// Miniredis forces the in-process miniredis even when redis-server is on
	// PATH.
	Miniredis bool
	// RequireServer refuses the miniredis fallback: without redis-server on
	// PATH, StartRedis returns ErrNoRedisServer.
	RequireServer bool
	// ReadyTimeout bounds the wait for the server to answer; default 10s.
	ReadyTimeout time.Duration
}

// Redis is a Redis server for one test or dev session: a redis-server child
// process on 127.0.0.1 (a free port, a temporary directory, no persistence
// except across Stop/Restart) when the binary is on PATH, else an
// in-process miniredis. miniredis has no CLIENT TRACKING, so clients must
// disable client-side caching against it (rueidis: DisableCache).
type Redis struct {
	mu       sync.Mutex
	port     int
	dir      string
	argv     []string // redis-server arguments after the config file, if any
	conf     string   // config file passed first (sentinel), or ""
	password string
	ready    time.Duration
	proc     *exec.Cmd
	exited   chan struct{}
	mini     *miniredis.Miniredis
	miniAddr string // kept: miniredis forgets its address once closed
}

// StartRedis starts a Redis server; see Redis for which one.
func StartRedis(opts RedisOptions) (*Redis, error) {
	_, lookErr := exec.LookPath("redis-server")
	useMini := opts.Miniredis || (lookErr != nil && !opts.RequireServer && len(opts.Args) == 0)
	if useMini {
		if len(opts.Args) > 0 {
			return nil, errors.New("devstack: RedisOptions.Args need redis-server, not miniredis")
		}
		m := miniredis.NewMiniRedis()
		if opts.Password != "" {
			m.RequireAuth(opts.Password)
		}
		m.ClockTTL(true) // keys expire by the wall clock, as on a real server
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("devstack: start miniredis: %w", err)
		}
		return &Redis{mini: m, miniAddr: m.Addr(), password: opts.Password}, nil
	}
	if lookErr != nil {
		return nil, ErrNoRedisServer
	}
	return startRedisServer("", opts.Args, opts.Password, opts.ReadyTimeout, false)
}

// startRedisServer runs redis-server on a free port. conf, if set, is a
// config file written by the caller (a sentinel's, which redis-server
// rewrites). busPort asks for a port whose cluster bus port (+10000) is
// free too. A port taken between picking and binding (go test runs
// packages in parallel) is retried with a fresh one.
func startRedisServer(conf string, args []string, password string, ready time.Duration, busPort bool) (*Redis, error) {
	dir, err := os.MkdirTemp("", "devstack-redis-")
	if err != nil {
		return nil, fmt.Errorf("devstack: redis dir: %w", err)
	}
	if ready <= 0 {
		ready = 10 * time.Second
	}
	r := &Redis{dir: dir, argv: args, password: password, ready: ready}
	if conf != "" {
		r.conf = filepath.Join(dir, "redis.conf")
		if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
			r.Close()
			return nil, fmt.Errorf("devstack: redis config: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		if r.port, err = pickRedisPort(busPort); err != nil {
			r.Close()
			return nil, err
		}
		err = r.start()
		if err == nil || !isAddrInUse(err) || attempt == 9 {
			break
		}
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func pickRedisPort(busPort bool) (int, error) {
	for range 50 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if !busPort {
			return p, nil
		}
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000)); err == nil {
			_ = l.Close()
			return p, nil
		}
	}
	return 0, errors.New("devstack: no free port pair for a cluster node")
}

// Addr is the server's host:port. It stays the same across Stop and Restart.
func (r *Redis) Addr() string {
	if r.mini != nil {
		return r.miniAddr
	}
	return "127.0.0.1:" + strconv.Itoa(r.port)
}

// Miniredis reports whether this is the in-process miniredis fallback.
func (r *Redis) Miniredis() bool { return r.mini != nil }

// Dir is the server's working directory (its dump file, logs and
// config), or "" for miniredis.
func (r *Redis) Dir() string { return r.dir }

// Stop shuts the server down the way an operator does (SHUTDOWN SAVE), so
// Restart brings its data back. Clients lose their connections.
func (r *Redis) Stop() error {
	if r.mini != nil {
		r.mini.Close()
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	if r.conf != "" { // a sentinel has no data to keep
		r.killLocked()
		return nil
	}
	// The connection drops when the server exits; that is the expected answer.
	_, _ = redisCommand(r.Addr(), r.password, time.Second, "SHUTDOWN", "SAVE")
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.proc.Process.Kill()
		<-r.exited
	}
	r.proc = nil
	return nil
}

// Kill ends the server with SIGKILL, a crash: nothing is saved.
func (r *Redis) Kill() {
	if r.mini != nil {
		r.mini.Close()
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killLocked()
}

func (r *Redis) killLocked() {
	if r.proc == nil {
		return
	}
	_ = r.proc.Process.Kill()
	<-r.exited
	r.proc = nil
}

// Pause freezes the server process (SIGSTOP): connections stay open but
// nothing is answered, like a server stuck in a long command or a network
// that drops packets without resetting connections. Resume ends it.
// miniredis cannot be paused.
func (r *Redis) Pause() error { return r.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (r *Redis) Resume() error { return r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) error {
	if r.mini != nil {
		return errors.New("devstack: miniredis cannot be paused")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return errors.New("devstack: redis-server is not running")
	}
	return r.proc.Process.Signal(sig)
}

// Restart starts a stopped server again on the same port and directory,
// with the data saved by Stop.
func (r *Redis) Restart() error {
	if r.mini != nil {
		return r.mini.Restart()
	}
	var err error
	for range 50 { // a just-closed port may linger for a moment
		if err = r.start(); err == nil || !isAddrInUse(err) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Running reports whether the server process is up.
func (r *Redis) Running() bool {
	if r.mini != nil {
		return r.mini.Server() != nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc != nil
}

// Close kills the server and removes its directory.
func (r *Redis) Close() {
	if r.mini != nil {
		r.mini.Close()
		return
	}
	r.mu.Lock()
	r.killLocked()
	r.mu.Unlock()
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

// Do sends one command to the server and returns its reply decoded as
// string, int64, []any, nil or error (a Redis error reply). It is for test
// setup and inspection, not for load.
func (r *Redis) Do(args ...string) (any, error) {
	return redisCommand(r.Addr(), r.password, 5*time.Second, args...)
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return ErrNoRedisServer
	}
	var argv []string
	if r.conf != "" {
		argv = append(argv, r.conf)
	}
	argv = append(argv,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--logfile", "redis.log",
		"--daemonize", "no",
	)
	if r.conf == "" { // redis-server refuses save options in sentinel mode
		argv = append(argv, "--save", "", "--appendonly", "no")
	}
	if r.password != "" {
		argv = append(argv, "--requirepass", r.password)
	}
	argv = append(argv, r.argv...)
	logPath := filepath.Join(r.dir, "redis.log")
	before := fileSize(logPath)
	cmd := exec.Command(bin, argv...)
	cmd.Dir = r.dir
	// The server dies with the test binary even if Close is never reached.
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("devstack: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(r.ready)
	for {
		err := pingRedis(r.Addr(), r.password, 200*time.Millisecond)
		if err == nil {
			break
		}
		select {
		case <-exited:
			log := tailSince(logPath, before)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("devstack: redis-server port %d: %w", r.port, syscall.EADDRINUSE)
			}
			return fmt.Errorf("devstack: redis-server on port %d exited: %s", r.port, log)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("devstack: redis-server on port %d not ready after %s: %w", r.port, r.ready, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.proc, r.exited = cmd, exited
	return nil
}

func fileSize(path string) int64 {
	if fi, err := os.Stat(path); err == nil {
		return fi.Size()
	}
	return 0
}

// tailSince returns what a log file gained after offset, trimmed, so a
// failed start says why.
func tailSince(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return "no log"
	}
	s := strings.TrimSpace(string(b[offset:]))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// RedisCluster is a Redis Cluster of redis-server processes with one
// master per node and no replicas, its slots spread evenly by
// `redis-cli --cluster create`.
type RedisCluster struct {
	nodes []*Redis
}

// RedisClusterOptions tune StartRedisCluster.
type RedisClusterOptions struct {
	// Masters is the number of master nodes; default 3 (the minimum
	// redis-cli accepts).
	Masters int
	// NodeTimeout is cluster-node-timeout; default 1s, so a failure is
	// noticed fast.
	NodeTimeout time.Duration
	// ReadyTimeout bounds the wait for the cluster to report state ok;
	// default 20s.
	ReadyTimeout time.Duration
}

// StartRedisCluster starts the nodes, joins them with redis-cli and waits
// until every node reports cluster_state:ok. It needs redis-server and
// redis-cli on PATH.
func StartRedisCluster(opts RedisClusterOptions) (*RedisCluster, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNoRedisServer
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	if opts.Masters <= 0 {
		opts.Masters = 3
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = time.Second
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 20 * time.Second
	}
	c := &RedisCluster{}
	args := []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
	}
	for range opts.Masters {
		n, err := startRedisServer("", args, "", 0, true)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	create := append([]string{"--cluster", "create"}, c.Addrs()...)
	create = append(create, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, create...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("devstack: redis-cli --cluster create: %w: %s", err, out)
	}
	deadline := time.Now().Add(opts.ReadyTimeout)
	for _, n := range c.nodes {
		for {
			info, err := n.Do("CLUSTER", "INFO")
			if s, ok := info.(string); err == nil && ok && strings.Contains(s, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				return nil, fmt.Errorf("devstack: cluster node %s not ok after %s", n.Addr(), opts.ReadyTimeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c, nil
}

// Addrs are the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Nodes are the cluster's servers, for fault injection.
func (c *RedisCluster) Nodes() []*Redis { return c.nodes }

// Close kills every node and removes their directories.
func (c *RedisCluster) Close() {
	for _, n := range c.nodes {
		n.Close()
	}
}

// RedisSentinel is a master, one replica and one Sentinel (quorum 1)
// watching them, each a redis-server process.
type RedisSentinel struct {
	name     string
	master   *Redis
	replica  *Redis
	sentinel *Redis
}

// RedisSentinelOptions tune StartRedisSentinel.
type RedisSentinelOptions struct {
	// MasterName is the monitored master set; default "mymaster".
	MasterName string
	// DownAfter is down-after-milliseconds; default 500ms.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout; default 2s.
	FailoverTimeout time.Duration
	// ReadyTimeout bounds each wait during start; default 20s.
	ReadyTimeout time.Duration
}

// StartRedisSentinel starts the master, a replica of it, and a Sentinel,
// and returns once the Sentinel knows the replica (so it can fail over).
func StartRedisSentinel(opts RedisSentinelOptions) (*RedisSentinel, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNoRedisServer
	}
	if opts.MasterName == "" {
		opts.MasterName = "mymaster"
	}
	if opts.DownAfter <= 0 {
		opts.DownAfter = 500 * time.Millisecond
	}
	if opts.FailoverTimeout <= 0 {
		opts.FailoverTimeout = 2 * time.Second
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 20 * time.Second
	}
	s := &RedisSentinel{name: opts.MasterName}
	var err error
	// No diskless-sync delay (default 5s): the replica attaches at once.
	if s.master, err = startRedisServer("", []string{"--repl-diskless-sync-delay", "0"}, "", 0, false); err != nil {
		return nil, err
	}
	if s.replica, err = startRedisServer("", []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.master.port)}, "", 0, false); err != nil {
		s.Close()
		return nil, err
	}
	// The Sentinel learns replicas from the master's INFO, which it reads on
	// connect and then every 10s: start it only once the replica is attached.
	if err := waitFor(opts.ReadyTimeout, func() bool {
		info, err := s.master.Do("INFO", "replication")
		str, _ := info.(string)
		return err == nil && strings.Contains(str, "connected_slaves:1") && strings.Contains(str, "state=online")
	}); err != nil {
		s.Close()
		return nil, fmt.Errorf("devstack: replica did not attach: %w", err)
	}
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds %s %d\n"+
		"sentinel failover-timeout %s %d\n",
		opts.MasterName, s.master.port,
		opts.MasterName, opts.DownAfter.Milliseconds(),
		opts.MasterName, opts.FailoverTimeout.Milliseconds())
	if s.sentinel, err = startRedisServer(conf, []string{"--sentinel"}, "", 0, false); err != nil {
		s.Close()
		return nil, err
	}
	if err := waitFor(opts.ReadyTimeout, func() bool {
		reps, err := s.sentinel.Do("SENTINEL", "REPLICAS", opts.MasterName)
		list, _ := reps.([]any)
		return err == nil && len(list) == 1
	}); err != nil {
		s.Close()
		return nil, fmt.Errorf("devstack: sentinel did not discover the replica: %w", err)
	}
	return s, nil
}

// MasterName is the monitored master set name.
func (s *RedisSentinel) MasterName() string { return s.name }

// SentinelAddr is the Sentinel's host:port, what clients connect to.
func (s *RedisSentinel) SentinelAddr() string { return s.sentinel.Addr() }

// Master and Replica are the servers as started; after a failover their
// roles are swapped.
func (s *RedisSentinel) Master() *Redis  { return s.master }
func (s *RedisSentinel) Replica() *Redis { return s.replica }

// CurrentMaster asks the Sentinel which address is the master now.
func (s *RedisSentinel) CurrentMaster() (string, error) {
	v, err := s.sentinel.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.name)
	if err != nil {
		return "", err
	}
	hp, ok := v.([]any)
	if !ok || len(hp) != 2 {
		return "", fmt.Errorf("devstack: unexpected sentinel reply %v", v)
	}
	return fmt.Sprintf("%v:%v", hp[0], hp[1]), nil
}

// Close kills every process and removes their directories.
func (s *RedisSentinel) Close() {
	for _, r := range []*Redis{s.sentinel, s.replica, s.master} {
		if r != nil {
			r.Close()
		}
	}
}

func waitFor(timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// pingRedis succeeds when addr answers PING (after AUTH, if password).
func pingRedis(addr, password string, timeout time.Duration) error {
	v, err := redisCommand(addr, password, timeout, "PING")
	if err != nil {
		return err
	}
	if e, ok := v.(error); ok {
		return e
	}
	return nil
}

// redisCommand sends one command on a fresh connection (AUTH first when a
// password is given) and reads its reply. A Redis error reply is returned
// as the value, not as err, so callers can tell "the server said no" from
// "the server is not there".
func redisCommand(addr, password string, timeout time.Duration, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	rd := bufio.NewReader(conn)
	if password != "" {
		if _, err := conn.Write(encodeCommand("AUTH", password)); err != nil {
			return nil, err
		}
		v, err := readReply(rd)
		if err != nil {
			return nil, err
		}
		if e, ok := v.(error); ok {
			return nil, e
		}
	}
	if _, err := conn.Write(encodeCommand(args...)); err != nil {
		return nil, err
	}
	return readReply(rd)
}

func encodeCommand(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// readReply reads one RESP2 reply.
func readReply(rd *bufio.Reader) (any, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("devstack: empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return errors.New(line[1:]), nil
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(rd); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("devstack: unexpected reply %q", line)
}
