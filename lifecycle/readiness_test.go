package lifecycle

import (
	"errors"
	"sync"
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

func TestReadinessDrainDelayOnlyOnce(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(100 * time.Millisecond)
	r.MarkStarted()

	start := time.Now()
	r.BeginStop()
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)

	start = time.Now()
	r.BeginStop()
	assert.Less(t, time.Since(start), 50*time.Millisecond, "only the first call drains")
}

func TestReadinessConcurrentBeginStopWaitsForDrain(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(100 * time.Millisecond)
	r.MarkStarted()

	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(r.BeginStop)
	}
	wg.Wait()
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	assert.Less(t, time.Since(start), 250*time.Millisecond, "the delay is not served once per caller")
}

func TestReadinessNoDrainWhenNeverReady(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(time.Second)
	start := time.Now()
	r.BeginStop() // a failed start rolling back: nobody routes traffic here
	assert.Less(t, time.Since(start), 100*time.Millisecond)
	assert.True(t, r.Stopping())
}

func TestReadinessNegativeDrainDelay(t *testing.T) {
	r := NewReadiness()
	r.SetDrainDelay(-time.Second)
	r.MarkStarted()
	start := time.Now()
	r.BeginStop()
	assert.Less(t, time.Since(start), 100*time.Millisecond)
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
