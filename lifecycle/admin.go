package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DefaultAdminAddr is loopback-only on purpose: the admin port exposes
// internals (and pprof when enabled), so reaching it from outside the host
// must be an explicit choice.
const DefaultAdminAddr = "127.0.0.1:9090"

// Timeouts of the admin HTTP server. There is no write timeout because a
// pprof CPU profile or trace legitimately streams for its whole duration.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminIdleTimeout       = 60 * time.Second
)

// AdminOptions configure the admin HTTP server.
type AdminOptions struct {
	// Addr is the listen address. Default DefaultAdminAddr; ":0" or
	// "127.0.0.1:0" picks a free port (read it back with AdminServer.Addr).
	Addr string
	// EnablePprof mounts the pprof endpoints under /debug/pprof/. Default off:
	// profiles reveal code paths and command lines.
	EnablePprof bool
}

// AdminServer is the service's operational HTTP endpoint: /healthz for
// liveness, /readyz for readiness, optional pprof, and a slot for /metrics
// and anything else mounted with Handle. It has its own ServeMux so nothing
// registered on http.DefaultServeMux leaks onto it.
type AdminServer struct {
	opts  AdminOptions
	agg   *Aggregator
	ready *Readiness
	log   *zap.Logger
	mux   *http.ServeMux

	pprofOnce sync.Once

	mu   sync.Mutex
	srv  *http.Server
	addr string
	done chan struct{} // closed when the serve goroutine returns
}

// NewAdminServer builds the server; nothing listens until Start. agg may be
// nil (no checks: always healthy), ready may be nil (readiness then depends on
// the checks alone) and log may be nil (no logging).
func NewAdminServer(opts AdminOptions, agg *Aggregator, ready *Readiness, log *zap.Logger) *AdminServer {
	if opts.Addr == "" {
		opts.Addr = DefaultAdminAddr
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &AdminServer{opts: opts, agg: agg, ready: ready, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s
}

// Configure replaces the options given to NewAdminServer. It exists for
// wiring that reads the options from config in phase 2: call it before
// Start; once started, the server keeps the options it started with.
func (s *AdminServer) Configure(opts AdminOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAdminAddr
	}
	s.opts = opts
}

// Handle mounts h at pattern (http.ServeMux syntax), e.g. the Prometheus
// handler at "/metrics". It may be called before or after Start. Like
// http.ServeMux.Handle it panics when pattern conflicts with one already
// registered, since that is a wiring bug.
func (s *AdminServer) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Start listens on Addr and serves in a goroutine that Stop ends. A bind
// failure is a CONNECTION *InfraError of component "admin" naming the
// address, so a port clash at boot says which port.
func (s *AdminServer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return InternalError("admin", "start", "admin server already started on "+s.addr, nil)
	}
	if s.opts.EnablePprof {
		s.mountPprof()
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return &InfraError{Type: TypeConnection, Component: "admin", Op: "listen", Field: "addr",
			Message: fmt.Sprintf("cannot listen on %s", s.opts.Addr), Cause: err}
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		IdleTimeout:       adminIdleTimeout,
		ErrorLog:          zap.NewStdLog(s.log.Named("admin.http")),
	}
	s.srv, s.addr, s.done = srv, ln.Addr().String(), make(chan struct{})
	done := s.done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped serving", zap.String("addr", ln.Addr().String()), zap.Error(err))
		}
	}()
	s.log.Info("admin server listening", zap.String("addr", s.addr), zap.Bool("pprof", s.opts.EnablePprof))
	return nil
}

// Addr returns the bound address, or "" when the server is not running.
func (s *AdminServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop shuts the server down gracefully: it stops accepting, lets in-flight
// requests finish, and returns when they have or when ctx ends. In the latter
// case open connections are closed and a TIMEOUT *InfraError is returned.
// Stop without Start, or a second Stop, does nothing.
func (s *AdminServer) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv, s.addr, s.done = nil, "", nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	began := time.Now()
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close() // ctx is over; cut the stragglers so the goroutine ends
		err = TimeoutError("admin", "stop", err)
	}
	<-done // Serve returns as soon as Shutdown or Close has closed the listener
	s.log.Info("admin server stopped", zap.Duration("took", time.Since(began)), zap.Error(err))
	return err
}

// healthz is liveness: answering at all proves the process serves HTTP.
// It deliberately ignores dependencies, so an orchestrator does not restart
// a healthy process because a database is down.
func (s *AdminServer) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok"))
}

// readyzBody is the JSON /readyz returns.
type readyzBody struct {
	Status    State             `json:"status"`
	Ready     bool              `json:"ready"`
	Reason    string            `json:"reason,omitempty"`
	Checks    map[string]Status `json:"checks"`
	CheckedAt time.Time         `json:"checked_at,omitzero"`
}

// readyz answers 200 when the app has started, is not stopping and no check
// is unhealthy (degraded still serves), else 503. While starting or stopping
// it does not run the checks: it answers fast and does not poke clients that
// are half-connected or being closed.
func (s *AdminServer) readyz(w http.ResponseWriter, r *http.Request) {
	body := readyzBody{Status: Healthy, Checks: map[string]Status{}}
	switch {
	case s.ready != nil && !s.ready.Ready():
		body.Status, body.Reason = Unhealthy, s.ready.phaseName()
	case s.agg != nil:
		rep := s.agg.Check(r.Context())
		body.Status, body.Checks, body.CheckedAt = rep.State, rep.Checks, rep.CheckedAt
		if rep.State == Unhealthy {
			body.Reason = "unhealthy checks"
		}
		body.Ready = rep.State != Unhealthy
	default:
		body.Ready = true
	}
	code := http.StatusOK
	if !body.Ready {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(s.encodeReadyz(body))
}

// encodeReadyz marshals body. Details a checker supplied may not encode (a
// channel, a func, a NaN); then they are dropped rather than losing the whole
// body, since the prober and the operator still need the states.
func (s *AdminServer) encodeReadyz(body readyzBody) []byte {
	b, err := json.Marshal(body)
	if err == nil {
		return append(b, '\n')
	}
	s.log.Warn("health check details do not encode as JSON; dropping them", zap.Error(err))
	checks := make(map[string]Status, len(body.Checks))
	for name, st := range body.Checks {
		st.Details = nil
		checks[name] = st
	}
	body.Checks = checks
	b, err = json.Marshal(body)
	if err != nil { // only Details can fail to encode
		return []byte(`{"status":"unhealthy","ready":false}` + "\n")
	}
	return append(b, '\n')
}
