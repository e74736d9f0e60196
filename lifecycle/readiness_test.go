package lifecycle

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/fx/fxevent"
)

func TestReadinessTransitions(t *testing.T) {
	var r Readiness // the zero value is usable
	assert.False(t, r.Ready())
	assert.False(t, r.Stopping())
	assert.Equal(t, "starting", r.phaseName())

	r.MarkStarted()
	assert.True(t, r.Ready())
	assert.Equal(t, "ready", r.phaseName())

	r.BeginStop()
	assert.False(t, r.Ready())
	assert.True(t, r.Stopping())
	assert.Equal(t, "stopping", r.phaseName())

	r.MarkStarted()
	assert.False(t, r.Ready(), "a stopping service never becomes ready again")
}

func TestReadinessDrainWaitsOnceAndRunsOnDrainFirst(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(100 * time.Millisecond)
	r.MarkStarted()
	var readyDuringOnDrain, called bool
	r.OnDrain(func(context.Context) { called, readyDuringOnDrain = true, r.Ready() })

	start := time.Now()
	r.Drain(context.Background())
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	assert.True(t, called)
	assert.False(t, readyDuringOnDrain, "readiness is off before OnDrain functions run")

	start = time.Now()
	r.Drain(context.Background())
	assert.Less(t, time.Since(start), 50*time.Millisecond, "only the first call drains")
}

// The drain is bounded by the stop context: it takes at most half of what
// is left, so the hooks after it still have time to run.
func TestReadinessDrainLeavesHalfTheStopTime(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(MaxDrainDelay)
	r.MarkStarted()
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	r.Drain(ctx)
	took := time.Since(start)
	assert.Less(t, took, 300*time.Millisecond)
	assert.NoError(t, ctx.Err(), "time is left for the hooks after the drain")
}

func TestReadinessDrainCutShortBySecondSignal(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(5 * time.Second)
	r.MarkStarted()
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}()
	start := time.Now()
	r.Drain(context.Background())
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestReadinessDrainDelayIsClamped(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(time.Hour)
	assert.Equal(t, MaxDrainDelay, r.DrainDelay())
	r.SetDrainDelay(-time.Second)
	assert.Zero(t, r.DrainDelay())
}

func TestReadinessNoDrainWhenNeverReady(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(time.Second)
	start := time.Now()
	r.Drain(context.Background()) // a failed start rolling back: nobody routes traffic here
	assert.Less(t, time.Since(start), 100*time.Millisecond)
	assert.True(t, r.Stopping())
}

type recordingLogger struct{ events []fxevent.Event }

func (l *recordingLogger) LogEvent(e fxevent.Event) { l.events = append(l.events, e) }

func TestEventLogger(t *testing.T) {
	tests := []struct {
		name      string
		events    []fxevent.Event
		wantReady bool
		wantStop  bool
	}{
		{"nothing yet", []fxevent.Event{&fxevent.Provided{}}, false, false},
		{"started", []fxevent.Event{&fxevent.Started{}}, true, false},
		{"failed start", []fxevent.Event{&fxevent.Started{Err: errors.New("boom")}}, false, false},
		{"signal", []fxevent.Event{&fxevent.Started{}, &fxevent.Stopping{}}, false, true},
		{"App.Stop without signal", []fxevent.Event{&fxevent.Started{}, &fxevent.OnStopExecuting{}}, false, true},
		{"run then hooks", []fxevent.Event{&fxevent.Started{}, &fxevent.Stopping{}, &fxevent.OnStopExecuting{}, &fxevent.OnStopExecuted{}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &recordingLogger{}
			r := NewReadiness()
			l := EventLogger(inner, r)
			for _, e := range tt.events {
				l.LogEvent(e)
			}
			assert.Equal(t, tt.wantReady, r.Ready())
			assert.Equal(t, tt.wantStop, r.Stopping())
			assert.Equal(t, tt.events, inner.events, "every event reaches the inner logger, in order")
		})
	}
}

func TestEventLoggerNilInnerAndReadiness(t *testing.T) {
	assert.NotPanics(t, func() {
		l := EventLogger(nil, nil)
		l.LogEvent(&fxevent.Started{})
		l.LogEvent(&fxevent.Stopping{})
		l.LogEvent(&fxevent.OnStopExecuting{})
	})
}
