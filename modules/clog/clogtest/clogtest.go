package clogtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/modules/clog"
)

// Logs holds every entry observed, at every level.
type Logs struct {
	*observer.ObservedLogs
	core zapcore.Core
}

// New returns a logger that records every entry, and the record.
func New() (*zap.Logger, *Logs) {
	l := NewLogs()
	return zap.New(l.core), l
}

// NewLogs returns an empty record, to tee an app into with Option.
func NewLogs() *Logs {
	core, logs := observer.New(zapcore.DebugLevel)
	return &Logs{ObservedLogs: logs, core: core}
}

// Option tees an fx app's logging (clog.Module) into l. The app's own
// levels still decide what is logged; l sees what the app writes.
func (l *Logs) Option() fx.Option {
	return fx.Supply(fx.Annotate(l.core, fx.As(new(zapcore.Core)), fx.ResultTags(`name:"`+clog.TeeName+`"`)))
}

// Messages lists the messages logged so far, in order.
func (l *Logs) Messages() []string {
	var out []string
	for _, e := range l.All() {
		out = append(out, e.Message)
	}
	return out
}

// Count counts entries whose message contains snippet.
func (l *Logs) Count(snippet string) int { return l.FilterMessageSnippet(snippet).Len() }

// Require returns the one entry whose message contains snippet, failing the
// test when there is none or more than one.
func (l *Logs) Require(t testing.TB, snippet string) observer.LoggedEntry {
	t.Helper()
	found := l.FilterMessageSnippet(snippet).All()
	if len(found) != 1 {
		t.Fatalf("clogtest: want exactly one entry containing %q, got %d; messages: %q", snippet, len(found), l.Messages())
	}
	return found[0]
}

// Eventually waits up to timeout for an entry whose message contains
// snippet and returns the first one.
func (l *Logs) Eventually(t testing.TB, snippet string, timeout time.Duration) observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if found := l.FilterMessageSnippet(snippet).All(); len(found) > 0 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("clogtest: no entry containing %q within %s; messages: %q", snippet, timeout, l.Messages())
		}
		time.Sleep(time.Millisecond)
	}
}

// AssertNoSecret fails the test if any message or field value logged so far
// contains one of secrets.
func (l *Logs) AssertNoSecret(t testing.TB, secrets ...string) {
	t.Helper()
	for _, e := range l.All() {
		text := e.Message + " " + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("clogtest: a log entry reveals a secret: %q %v", e.Message, e.ContextMap())
			}
		}
	}
}
