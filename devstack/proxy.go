package devstack

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on loopback in front of a server. Fault tests close
// it to cut every client off at once (as a crashed server or a broken
// network would), blackhole it to make the network silently lose packets,
// then open it again on the same address.
type Proxy struct {
	target string

	mu    sync.Mutex
	addr  string
	ln    net.Listener
	conns map[net.Conn]struct{}
	// flowing is closed while bytes may pass; Blackhole replaces it with an
	// open channel that Open closes.
	flowing chan struct{}
	// closed is closed by Close, so that pipes stalled by a blackhole give
	// up instead of waiting for an Open that may never come.
	closed chan struct{}
	wg     sync.WaitGroup
}

// NewProxy listens on 127.0.0.1 (a kernel-chosen port) and forwards each
// connection to target.
func NewProxy(target string) (*Proxy, error) { return NewProxyAt("127.0.0.1:0", target) }

// ErrAddrInUse is returned when an address asked for is taken.
var ErrAddrInUse = errors.New("address already in use")

// NewProxyAt is NewProxy listening on addr; an address that is taken is
// ErrAddrInUse at once.
func NewProxyAt(addr, target string) (*Proxy, error) {
	if err := checkFree(addr); err != nil {
		return nil, err
	}
	flowing := make(chan struct{})
	close(flowing)
	p := &Proxy{target: target, addr: addr, conns: map[net.Conn]struct{}{}, flowing: flowing}
	if err := p.Open(); err != nil {
		return nil, err
	}
	return p, nil
}

// checkFree reports ErrAddrInUse for a fixed address that is taken.
func checkFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if isAddrInUse(err) {
			return fmt.Errorf("devstack: %s: %w", addr, ErrAddrInUse)
		}
		return fmt.Errorf("devstack: listen %s: %w", addr, err)
	}
	return ln.Close()
}

// Addr is the proxy's host:port; it stays the same across Close and Open.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Open starts accepting again after Close, or lets bytes flow again after
// Blackhole (connections stalled by it resume where they stopped). A
// just-closed port may linger for a moment, so binding is retried briefly.
func (p *Proxy) Open() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
	default:
		close(p.flowing)
	}
	if p.ln != nil {
		return nil
	}
	var (
		ln  net.Listener
		err error
	)
	for range 100 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("devstack: proxy listen %s: %w", p.addr, err)
	}
	p.ln, p.addr = ln, ln.Addr().String()
	p.closed = make(chan struct{})
	p.wg.Add(1)
	go p.accept(ln, p.closed)
	return nil
}

// Blackhole stops forwarding bytes in either direction on every connection,
// open or new, without closing any: a partition in which packets are lost,
// so each side only notices through its own timeouts. New connections are
// still accepted (the kernel completes the handshake) but never answered.
// Open ends it; Close drops everything.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.flowing:
		p.flowing = make(chan struct{})
	default: // already blackholed
	}
}

// Close stops accepting and drops every open connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	for c := range p.conns {
		_ = c.Close()
	}
	if ln != nil {
		close(p.closed)
	}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	p.wg.Wait()
}

func (p *Proxy) accept(ln net.Listener, closed <-chan struct{}) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c, closed)
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// gate blocks while the proxy is blackholed; false means the proxy closed.
func (p *Proxy) gate(closed <-chan struct{}) bool {
	p.mu.Lock()
	flowing := p.flowing
	p.mu.Unlock()
	select {
	case <-flowing:
		return true
	case <-closed:
		return false
	}
}

func (p *Proxy) serve(client net.Conn, closed <-chan struct{}) {
	defer p.wg.Done()
	defer client.Close()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	// A blackholed proxy does not reach the server either: the client's
	// handshake with it must hang, not complete.
	if !p.gate(closed) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	// Either side ending (EOF, reset, or Close above) ends the pair.
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if !p.gate(closed) {
					break
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}
