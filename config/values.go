package config

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gochat/im-infra/lifecycle"
)

// Values is the set of Values of one app, for the "config" health check,
// metrics and tests. ProvideValue adds every Value it makes.
type Values struct {
	mu   sync.Mutex
	list []statusReporter
}

type statusReporter interface{ Status() Status }

// NewValues returns an empty set.
func NewValues() *Values { return &Values{} }

func (s *Values) add(v statusReporter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, v)
}

// Statuses reports every Value's state, sorted by component.
func (s *Values) Statuses() []Status {
	s.mu.Lock()
	list := slices.Clone(s.list)
	s.mu.Unlock()
	out := make([]Status, len(list))
	for i, v := range list {
		out[i] = v.Status()
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Component, b.Component) })
	return out
}

// Status reports the state of component's Value; ok is false when the app
// has none.
func (s *Values) Status(component string) (st Status, ok bool) {
	for _, st := range s.Statuses() {
		if st.Component == component {
			return st, true
		}
	}
	return Status{}, false
}

// Name implements lifecycle.Checker.
func (s *Values) Name() string { return ModuleName }

// Check implements lifecycle.Checker: degraded while a component runs on
// its snapshot or defaults because the source is unreachable, or while its
// current documents are refused (the last valid config is in force, so the
// service still takes traffic); healthy otherwise. Details list, per
// component, where its config came from, the revision, the counts and any
// refusal. It does no I/O.
func (s *Values) Check(context.Context) lifecycle.Status {
	state := lifecycle.Healthy
	var problems []string
	details := map[string]any{}
	for _, st := range s.Statuses() {
		d := map[string]any{
			"origin":   st.Origin,
			"revision": st.Revision,
			"applied":  st.Applied,
			"rejected": st.Rejected,
		}
		if !st.SavedAt.IsZero() {
			d["snapshot_written"] = st.SavedAt.UTC().Format(time.RFC3339)
			d["snapshot_age"] = time.Since(st.SavedAt).Round(time.Second).String()
		}
		if st.Degraded {
			d["degraded"] = true
			state = lifecycle.Degraded
			problems = append(problems, st.Component+": source unreachable, running on "+st.Origin)
		}
		if r := st.Refusal; r != nil {
			d["refused"] = map[string]any{"key": r.Key, "revision": r.Revision, "error": r.Err.Error(), "at": r.At.UTC().Format(time.RFC3339)}
			state = lifecycle.Degraded
			problems = append(problems, st.Component+": documents refused, last valid config in force")
		}
		details[st.Component] = d
	}
	return lifecycle.Status{State: state, Message: strings.Join(problems, "; "), Details: details}
}
