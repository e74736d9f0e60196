package lifecycle

import (
	"fmt"
	"html"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The pprof endpoints are served from runtime/pprof directly rather than
// through net/http/pprof, whose import registers them on
// http.DefaultServeMux in every binary: a service that serves the default
// mux on a public port would expose profiles without ever asking for them.
// They follow net/http/pprof's URLs and parameters, so `go tool pprof
// http://127.0.0.1:9090/debug/pprof/heap` works as usual.

// maxProfileSeconds bounds a CPU profile or trace request.
const maxProfileSeconds = 300

func (s *AdminServer) mountPprof() {
	s.pprofOnce.Do(func() {
		s.mux.HandleFunc("GET /debug/pprof/{$}", pprofIndex)
		s.mux.HandleFunc("GET /debug/pprof/cmdline", pprofCmdline)
		s.mux.HandleFunc("GET /debug/pprof/profile", pprofCPU)
		s.mux.HandleFunc("GET /debug/pprof/trace", pprofTrace)
		s.mux.HandleFunc("GET /debug/pprof/{name}", pprofNamed)
	})
}

func pprofIndex(w http.ResponseWriter, _ *http.Request) {
	profiles := pprof.Profiles()
	sort.Slice(profiles, func(i, j int) bool { return profiles[i].Name() < profiles[j].Name() })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	b.WriteString("<html><head><title>/debug/pprof/</title></head><body><p>Profiles:</p><table>\n")
	for _, p := range profiles {
		name := html.EscapeString(p.Name())
		fmt.Fprintf(&b, "<tr><td>%d</td><td><a href=\"%s?debug=1\">%s</a></td></tr>\n", p.Count(), name, name)
	}
	b.WriteString("<tr><td></td><td><a href=\"profile?seconds=30\">profile</a> (CPU, 30s)</td></tr>\n")
	b.WriteString("<tr><td></td><td><a href=\"trace?seconds=5\">trace</a> (5s)</td></tr>\n")
	b.WriteString("<tr><td></td><td><a href=\"cmdline\">cmdline</a></td></tr>\n")
	b.WriteString("</table></body></html>\n")
	_, _ = w.Write([]byte(b.String()))
}

func pprofCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strings.Join(os.Args, "\x00")))
}

// pprofSeconds reads ?seconds=, defaulting to def and bounded to
// maxProfileSeconds; it answers 400 itself when the value is bad.
func pprofSeconds(w http.ResponseWriter, r *http.Request, def int) (time.Duration, bool) {
	sec := def
	if v := r.FormValue("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxProfileSeconds {
			http.Error(w, fmt.Sprintf("seconds must be an integer in 1..%d", maxProfileSeconds), http.StatusBadRequest)
			return 0, false
		}
		sec = n
	}
	return time.Duration(sec) * time.Second, true
}

// sleepCtx waits d or until the client goes away.
func sleepCtx(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func pprofCPU(w http.ResponseWriter, r *http.Request) {
	d, ok := pprofSeconds(w, r, 30)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="profile"`)
	if err := pprof.StartCPUProfile(w); err != nil {
		// Most likely another profile is already running.
		http.Error(w, "cannot start CPU profile: "+err.Error(), http.StatusInternalServerError)
		return
	}
	sleepCtx(r, d)
	pprof.StopCPUProfile()
}

func pprofTrace(w http.ResponseWriter, r *http.Request) {
	d, ok := pprofSeconds(w, r, 1)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="trace"`)
	if err := trace.Start(w); err != nil {
		http.Error(w, "cannot start trace: "+err.Error(), http.StatusInternalServerError)
		return
	}
	sleepCtx(r, d)
	trace.Stop()
}

func pprofNamed(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := pprof.Lookup(name)
	if p == nil {
		http.Error(w, "unknown profile "+strconv.Quote(name), http.StatusNotFound)
		return
	}
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	if name == "heap" && r.FormValue("gc") != "" {
		runtime.GC()
	}
	if debug != 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	}
	if err := p.WriteTo(w, debug); err != nil {
		http.Error(w, "cannot write profile: "+err.Error(), http.StatusInternalServerError)
	}
}
