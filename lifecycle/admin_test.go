package lifecycle

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap/zaptest"
)

// get fetches path from the admin server on a fresh connection, so no
// keep-alive goroutine outlives the test for goleak to find.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// startAdmin starts a server on a free loopback port and stops it when the
// test ends.
func startAdmin(t *testing.T, opts AdminOptions, agg *Aggregator, ready *Readiness) *AdminServer {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	s := NewAdminServer(opts, agg, ready, zaptest.NewLogger(t))
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(func() { require.NoError(t, s.Stop(context.Background())) })
	return s
}

func readyReadiness() *Readiness {
	r := NewReadiness()
	r.MarkStarted()
	return r
}

type readyzJSON struct {
	Status    State             `json:"status"`
	Ready     bool              `json:"ready"`
	Reason    string            `json:"reason"`
	Checks    map[string]Status `json:"checks"`
	CheckedAt *time.Time        `json:"checked_at"`
}

func decodeReadyz(t *testing.T, body string) readyzJSON {
	t.Helper()
	var out readyzJSON
	require.NoError(t, json.Unmarshal([]byte(body), &out), body)
	return out
}

// TestAdminReadinessThroughFxLifecycle drives the real fx event stream:
// /readyz is 503 while OnStart hooks run, 200 once the app has started, and
// 503 throughout the drain, which is the first stop step: the other OnStop
// hooks run after it.
func TestAdminReadinessThroughFxLifecycle(t *testing.T) {
	const drain = 200 * time.Millisecond
	var (
		srv           *AdminServer
		codeDuringRun int
		codeInDrain   int
		stopHookAt    time.Time
	)
	app := fxtest.New(t,
		Module,
		fx.WithLogger(func(r *Readiness) fxevent.Logger {
			r.SetDrainDelay(drain)
			return EventLogger(&fxevent.ZapLogger{Logger: zaptest.NewLogger(t)}, r)
		}),
		fx.Provide(
			func(agg *Aggregator, r *Readiness) *AdminServer {
				agg.Add(fixed("db", Healthy, ""))
				return NewAdminServer(AdminOptions{Addr: "127.0.0.1:0"}, agg, r, zaptest.NewLogger(t))
			},
		),
		// A service's hook, registered before the admin server's: it starts
		// before the server listens and stops after the drain.
		fx.Invoke(func(lc fx.Lifecycle, r *Readiness) {
			lc.Append(fx.Hook{
				OnStart: func(context.Context) error {
					if !r.Ready() {
						codeDuringRun = http.StatusServiceUnavailable
					}
					return nil
				},
				OnStop: func(context.Context) error {
					stopHookAt = time.Now()
					return nil
				},
			})
		}),
		fx.Invoke(func(lc fx.Lifecycle, s *AdminServer, r *Readiness) {
			r.OnDrain(func(context.Context) { codeInDrain, _ = get(t, s.Addr(), "/readyz") })
			RegisterAdmin(lc, s, r)
		}),
		fx.Populate(&srv),
	)

	app.RequireStart()
	assert.Equal(t, http.StatusServiceUnavailable, codeDuringRun, "not ready while OnStart hooks run")

	code, body := get(t, srv.Addr(), "/readyz")
	assert.Equal(t, http.StatusOK, code)
	rz := decodeReadyz(t, body)
	assert.True(t, rz.Ready)
	assert.Equal(t, Healthy, rz.Status)
	assert.Equal(t, Status{State: Healthy}, rz.Checks["db"], "the checker registered with Add")

	code, body = get(t, srv.Addr(), "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body)

	stopBegan := time.Now()
	app.RequireStop()
	assert.Equal(t, http.StatusServiceUnavailable, codeInDrain, "503 from the live server as the drain begins")
	assert.GreaterOrEqual(t, stopHookAt.Sub(stopBegan), drain-10*time.Millisecond,
		"the service's OnStop hook runs only after the drain")
	assert.Empty(t, srv.Addr(), "RegisterAdmin's OnStop stopped the server")
}

func TestAdminReadyzStartingIsFastAndSkipsChecks(t *testing.T) {
	var called bool
	agg := NewAggregator([]Checker{CheckerFunc("x", func(context.Context) Status {
		called = true
		return Status{State: Healthy}
	})}, AggregatorOptions{})
	s := startAdmin(t, AdminOptions{}, agg, NewReadiness())

	code, body := get(t, s.Addr(), "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	rz := decodeReadyz(t, body)
	assert.False(t, rz.Ready)
	assert.Equal(t, Unhealthy, rz.Status)
	assert.Equal(t, "starting", rz.Reason)
	assert.Empty(t, rz.Checks)
	assert.Nil(t, rz.CheckedAt, "checked_at is omitted when nothing ran")
	assert.False(t, called)
}

func TestAdminReadyzByAggregateState(t *testing.T) {
	tests := []struct {
		name      string
		checkers  []Checker
		wantCode  int
		wantState State
	}{
		{"no checkers", nil, http.StatusOK, Healthy},
		{"healthy", []Checker{fixed("db", Healthy, "")}, http.StatusOK, Healthy},
		{"degraded still serves", []Checker{fixed("db", Healthy, ""), fixed("coord", Degraded, "serving snapshot")}, http.StatusOK, Degraded},
		{"unhealthy", []Checker{fixed("db", Healthy, ""), fixed("cache", Unhealthy, "dial tcp: refused")}, http.StatusServiceUnavailable, Unhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startAdmin(t, AdminOptions{}, NewAggregator(tt.checkers, AggregatorOptions{}), readyReadiness())
			code, body := get(t, s.Addr(), "/readyz")
			assert.Equal(t, tt.wantCode, code)
			rz := decodeReadyz(t, body)
			assert.Equal(t, tt.wantState, rz.Status)
			assert.Equal(t, tt.wantCode == http.StatusOK, rz.Ready)
			assert.Len(t, rz.Checks, len(tt.checkers))
		})
	}
}

func TestAdminReadyzUnhealthyDetails(t *testing.T) {
	agg := NewAggregator([]Checker{CheckerFunc("cache", func(context.Context) Status {
		return Status{State: Unhealthy, Message: "dial tcp 127.0.0.1:6379: connection refused",
			Details: map[string]any{"addr": "127.0.0.1:6379", "attempts": 3}}
	})}, AggregatorOptions{})
	s := startAdmin(t, AdminOptions{}, agg, readyReadiness())

	code, body := get(t, s.Addr(), "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	assert.Equal(t, "unhealthy", raw["status"])
	assert.Equal(t, false, raw["ready"])
	assert.Equal(t, map[string]any{
		"status":  "unhealthy",
		"message": "dial tcp 127.0.0.1:6379: connection refused",
		"details": map[string]any{"addr": "127.0.0.1:6379", "attempts": float64(3)},
	}, raw["checks"].(map[string]any)["cache"])
}

func TestAdminReadyzUnencodableDetailsAreDropped(t *testing.T) {
	agg := NewAggregator([]Checker{CheckerFunc("odd", func(context.Context) Status {
		return Status{State: Degraded, Message: "odd", Details: map[string]any{"ch": make(chan int)}}
	})}, AggregatorOptions{})
	s := startAdmin(t, AdminOptions{}, agg, readyReadiness())

	code, body := get(t, s.Addr(), "/readyz")
	assert.Equal(t, http.StatusOK, code)
	rz := decodeReadyz(t, body)
	assert.Equal(t, Status{State: Degraded, Message: "odd"}, rz.Checks["odd"])
}

func TestAdminNilDependencies(t *testing.T) {
	s := NewAdminServer(AdminOptions{Addr: "127.0.0.1:0"}, nil, nil, nil)
	require.NoError(t, s.Start(t.Context()))
	defer func() { require.NoError(t, s.Stop(context.Background())) }()
	code, _ := get(t, s.Addr(), "/readyz")
	assert.Equal(t, http.StatusOK, code)
}

func TestAdminHealthz(t *testing.T) {
	s := startAdmin(t, AdminOptions{}, nil, NewReadiness())
	code, body := get(t, s.Addr(), "/healthz")
	assert.Equal(t, http.StatusOK, code, "liveness does not depend on readiness")
	assert.Equal(t, "ok", body)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+s.Addr()+"/healthz", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestAdminPprof(t *testing.T) {
	tests := []struct {
		enabled bool
		want    int
	}{
		{false, http.StatusNotFound},
		{true, http.StatusOK},
	}
	for _, tt := range tests {
		s := startAdmin(t, AdminOptions{EnablePprof: tt.enabled}, nil, nil)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"} {
			code, _ := get(t, s.Addr(), path)
			assert.Equal(t, tt.want, code, "pprof enabled=%v %s", tt.enabled, path)
		}
	}
}

func TestAdminPprofServesRealProfiles(t *testing.T) {
	s := startAdmin(t, AdminOptions{EnablePprof: true}, nil, nil)
	code, body := get(t, s.Addr(), "/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "goroutine")
	assert.Contains(t, body, "heap")

	code, body = get(t, s.Addr(), "/debug/pprof/goroutine?debug=1")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "TestAdminPprofServesRealProfiles")

	// The CPU profile is a gzipped protobuf, as go tool pprof expects.
	code, body = get(t, s.Addr(), "/debug/pprof/profile?seconds=1")
	require.Equal(t, http.StatusOK, code)
	require.Greater(t, len(body), 2)
	assert.Equal(t, "\x1f\x8b", body[:2], "gzip magic")

	code, _ = get(t, s.Addr(), "/debug/pprof/nosuch")
	assert.Equal(t, http.StatusNotFound, code)
	for _, bad := range []string{"0", "-1", "x", "301"} {
		code, _ = get(t, s.Addr(), "/debug/pprof/profile?seconds="+bad)
		assert.Equal(t, http.StatusBadRequest, code, bad)
	}
}

func TestPprofStaysOffTheDefaultMux(t *testing.T) {
	_, pattern := http.DefaultServeMux.Handler(httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
	assert.Empty(t, pattern, "nothing in lifecycle registers pprof on http.DefaultServeMux")
}

func TestAdminHandleMetricsSlot(t *testing.T) {
	s := startAdmin(t, AdminOptions{}, nil, nil)
	code, _ := get(t, s.Addr(), "/metrics")
	assert.Equal(t, http.StatusNotFound, code, "nothing mounted yet")

	s.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# metrics\n")
	}))
	code, body := get(t, s.Addr(), "/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "# metrics\n", body)

	assert.Panics(t, func() { s.Handle("/metrics", http.NotFoundHandler()) }, "a second mount is a wiring bug")
}

func TestAdminBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	s := NewAdminServer(AdminOptions{Addr: ln.Addr().String()}, nil, nil, nil)
	err = s.Start(t.Context())
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrConnection)
	var ie *InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "admin", ie.Component)
	assert.Contains(t, err.Error(), ln.Addr().String())
	assert.Empty(t, s.Addr())
	assert.NoError(t, s.Stop(context.Background()), "Stop after a failed Start is a no-op")
}

func TestAdminStartTwiceAndStopTwice(t *testing.T) {
	s := NewAdminServer(AdminOptions{Addr: "127.0.0.1:0"}, nil, nil, nil)
	require.NoError(t, s.Start(t.Context()))
	err := s.Start(t.Context())
	assert.ErrorIs(t, err, ErrInternal)
	require.NoError(t, s.Stop(context.Background()))
	require.NoError(t, s.Stop(context.Background()))
}

func TestAdminDefaultAddr(t *testing.T) {
	s := NewAdminServer(AdminOptions{}, nil, nil, nil)
	assert.Equal(t, DefaultAdminAddr, s.opts.Addr)
}

func TestAdminStopHonoursContext(t *testing.T) {
	s := NewAdminServer(AdminOptions{Addr: "127.0.0.1:0"}, nil, nil, zaptest.NewLogger(t))
	entered := make(chan struct{})
	s.Handle("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // ends when Stop gives up and closes the connection
	}))
	require.NoError(t, s.Start(t.Context()))

	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + s.Addr() + "/slow")
		if err == nil {
			resp.Body.Close()
		}
	})
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Stop(ctx)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Less(t, time.Since(start), time.Second)
	wg.Wait()
}

func TestAdminConfigureBeforeStart(t *testing.T) {
	s := NewAdminServer(AdminOptions{Addr: "203.0.113.1:1"}, nil, nil, nil)
	s.Configure(AdminOptions{Addr: "127.0.0.1:0", EnablePprof: true})
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, s.Stop(context.Background())) })
	code, _ := get(t, s.Addr(), "/debug/pprof/cmdline")
	assert.Equal(t, http.StatusOK, code, "options given to Configure apply")

	running := s.Addr()
	s.Configure(AdminOptions{Addr: "127.0.0.1:1"})
	assert.Equal(t, running, s.Addr(), "a running server keeps its options")
}
