package config_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// rangeConfig has rules that span fields and layers, like real components:
// min <= max, and a file output needs a path.
type rangeConfig struct {
	Min    int    `json:"min"`
	Max    int    `json:"max"`
	Output string `json:"output"`
	File   struct {
		Path string `json:"path"`
	} `json:"file"`
	Peers  []peer           `json:"peers"`
	Routes map[string]route `json:"routes"`
	Token  config.Secret    `json:"token"`
}

func (rangeConfig) Defaults() rangeConfig {
	return rangeConfig{Min: 1, Max: 10, Output: "stderr", Routes: map[string]route{"a": {Weight: 1}}}
}

func (c rangeConfig) Validate() error {
	if c.Min > c.Max {
		return lifecycle.ValidationError("", "min", fmt.Sprintf("min %d is above max %d", c.Min, c.Max))
	}
	if c.Output == "file" && c.File.Path == "" {
		return lifecycle.ValidationError("", "file.path", "required when output is file")
	}
	for i, p := range c.Peers {
		if p.Name == "" {
			return lifecycle.ValidationError("", fmt.Sprintf("peers[%d].name", i), "required")
		}
	}
	return nil
}

var (
	rangeGlobal  = config.GlobalKey("test", "r")
	rangeService = config.Key("test", "im-repo", "r")
)

func startRange(t *testing.T, src config.Source, opts ...config.ValueOption) *config.Value[rangeConfig] {
	t.Helper()
	v := config.NewValue[rangeConfig]("r", src, testID, opts...)
	require.NoError(t, v.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, v.Stop(context.Background())) })
	return v
}

func waitRevision(t *testing.T, v interface{ Revision() int64 }, rev int64) {
	t.Helper()
	require.Eventually(t, func() bool { return v.Revision() >= rev }, 2*time.Second, 100*time.Microsecond)
}

// The design document's boot case: a global document that is only valid
// together with the service's own must not be refused over defaults.
func TestValueBootConvergesOnAValidPair(t *testing.T) {
	src := config.NewMemorySource()
	src.Set(rangeGlobal, []byte(`{"output":"file"}`))
	src.Set(rangeService, []byte(`{"file":{"path":"/var/log/x.log"}}`))
	v := startRange(t, src)
	assert.Equal(t, "file", v.Get().Output)
	assert.Equal(t, "/var/log/x.log", v.Get().File.Path)
	assert.Zero(t, v.Rejected())
}

// The runtime case: global {"min":15} is refused over max 10, then service
// {"max":20} makes the set valid, and the value must reach {15,20}.
func TestValueRuntimeConvergesWhenALaterWriteMakesTheSetValid(t *testing.T) {
	src := config.NewMemorySource()
	v := startRange(t, src)
	waitRevision(t, v, src.Set(rangeGlobal, []byte(`{"min":15}`)))
	assert.Equal(t, 1, v.Get().Min, "refused alone: min 15 > max 10")
	waitRevision(t, v, src.Set(rangeService, []byte(`{"max":20}`)))
	assert.Equal(t, 15, v.Get().Min)
	assert.Equal(t, 20, v.Get().Max)

	// Deleting the layer that made the set valid makes it invalid again:
	// the last valid value stays until a write fixes it.
	waitRevision(t, v, src.Delete(rangeService))
	assert.Equal(t, 20, v.Get().Max)
	waitRevision(t, v, src.Delete(rangeGlobal))
	assert.Equal(t, rangeConfig{}.Defaults(), v.Get())
}

// TestValueModelBased drives random writes and deletes of valid, invalid
// and cross-field-invalid documents over the global and service layers, and
// at each quiet point compares Get with an oracle: the last set of layers
// that Parse accepted, in write order (defaults at boot). Restarts check the
// boot rule too.
func TestValueModelBased(t *testing.T) {
	steps := 10000
	if testing.Short() {
		steps = 1000
	}
	docs := []string{
		`{"min":15}`, `{"max":20}`, `{"min":3,"max":4}`, `{"max":2}`, `{"min":12}`,
		`{"output":"file"}`, `{"file":{"path":"/var/log/x.log"}}`, `{"output":"stderr"}`,
		`{"peers":[{"name":"a","weight":5}]}`, `{"peers":[{"name":"b"}]}`, `{"peers":[{"weight":1}]}`,
		`{"routes":{"a":{"weight":7}}}`, `{"routes":{"b":{"timeout":"1s"}}}`, `{"routes":{"a":null}}`,
		`{"token":"t1"}`, `{"token":"t2"}`,
		`{}`, `null`, ``, `{"min":`, `{"bogus":1}`, `{"max":"ten"}`, `{"routes":{"a":{"timeout":"x"}}}`, `[]`,
	}
	keys := []string{rangeGlobal, rangeService}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	src := config.NewMemorySource()
	model := map[string][]byte{}

	parse := func() (rangeConfig, bool) {
		c, err := config.Parse[rangeConfig]("r", config.Layer{Key: rangeGlobal, Data: model[rangeGlobal]}, config.Layer{Key: rangeService, Data: model[rangeService]})
		return c, err == nil
	}
	start := func() *config.Value[rangeConfig] {
		v := config.NewValue[rangeConfig]("r", src, testID)
		require.NoError(t, v.Start(context.Background()))
		return v
	}
	v := start()
	defer func() { require.NoError(t, v.Stop(context.Background())) }()
	expect := rangeConfig{}.Defaults()
	var lastRev int64
	for step := 0; step < steps; step++ {
		key := keys[rng.IntN(len(keys))]
		if rng.IntN(5) == 0 {
			lastRev = src.Delete(key)
			delete(model, key)
		} else {
			d := []byte(docs[rng.IntN(len(docs))])
			lastRev = src.Set(key, d)
			model[key] = d
		}
		if c, ok := parse(); ok {
			expect = c
		}
		if rng.IntN(4) != 0 {
			continue
		}
		waitRevision(t, v, lastRev)
		if !assert.Equal(t, expect, v.Get(), "step %d, layers global=%q service=%q", step, model[rangeGlobal], model[rangeService]) {
			return
		}
		if rng.IntN(50) == 0 {
			require.NoError(t, v.Stop(context.Background()))
			v = start()
			expect = rangeConfig{}.Defaults()
			if c, ok := parse(); ok {
				expect = c
			}
			require.Equal(t, expect, v.Get(), "after restart at step %d", step)
		}
	}
}

// A watch that fails at once must not make the Value reload in a tight
// loop: the backoff only resets after the watch made progress.
type failingWatch struct{ *config.MemorySource }

func (f failingWatch) Watch(context.Context, int64, func(config.Document), ...string) error {
	return lifecycle.ConnectionError("config", "watch", fmt.Errorf("permission denied"))
}

func TestValueWatchFailingAtOnceBacksOff(t *testing.T) {
	src := config.NewMemorySource()
	v := startValue(t, failingWatch{src})
	_ = v
	time.Sleep(1500 * time.Millisecond)
	// 50ms doubling to 1s with half jitter: at most 6 reloads in 1.5s
	// (the reset-on-load bug made about 40).
	assert.LessOrEqual(t, src.Loads(), 7, "reloads in 1.5s")
}

func TestValueWakesWhenTheSourceRecovers(t *testing.T) {
	src := config.NewMemorySource()
	src.Set(serviceKey, []byte(`{"poolSize":42}`))
	src.SetDown(true)
	// A backoff of 10s: only the recovery notice can bring the value back
	// within the test's deadline.
	v := startValue(t, src, config.WithLoadTimeout(50*time.Millisecond), config.WithRetry(10*time.Second, 10*time.Second))
	require.True(t, v.Degraded())
	time.Sleep(20 * time.Millisecond)
	up := time.Now()
	src.SetDown(false)
	require.Eventually(t, func() bool { return v.Get().PoolSize == 42 }, time.Second, time.Millisecond)
	assert.Less(t, time.Since(up), 200*time.Millisecond)
}

func TestValueLogsAppliedChangesAndDeletedLayers(t *testing.T) {
	src := config.NewMemorySource()
	core, logs := observer.New(zapcore.InfoLevel)
	v := startRange(t, src, config.WithLogger(zap.New(core)))
	rev := src.Set(rangeService, []byte(`{"max":20,"token":"hunter2","routes":{"a":{"weight":3}}}`))
	waitRevision(t, v, rev)
	applied := logs.FilterMessage("config applied").All()
	require.Len(t, applied, 1)
	fields := applied[0].ContextMap()
	assert.Equal(t, "r", fields["component"])
	assert.Equal(t, []any{rangeService}, fields["keys"])
	assert.Equal(t, []any{rev}, fields["revisions"])
	assert.Equal(t, []any{"max: 10 → 20", "routes.a.weight: 1 → 3", "token: changed (secret)"}, fields["changed"])
	for _, e := range logs.All() {
		assert.NotContains(t, fmt.Sprint(e.ContextMap()), "hunter2")
	}

	rev = src.Delete(rangeService)
	waitRevision(t, v, rev)
	deleted := logs.FilterMessage("config layer deleted; the layer below applies").All()
	require.Len(t, deleted, 1)
	assert.Equal(t, rangeService, deleted[0].ContextMap()["key"])
	assert.Equal(t, rev, deleted[0].ContextMap()["revision"])
}

// Subscribe hands out the current value and every change after it, with no
// gap: a subscriber that arrives during a stream of updates ends on the
// final value, having seen each change in order.
func TestValueSubscribeSeesCurrentThenEveryChange(t *testing.T) {
	src := config.NewMemorySource()
	v := startValue(t, src)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 11; i <= 300; i++ {
			src.Set(serviceKey, []byte(`{"poolSize":`+strconv.Itoa(i)+`}`))
		}
	}()
	var (
		mu   sync.Mutex
		seen []int
	)
	cancel := v.Subscribe(func(old, new testConfig) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) > 0 {
			assert.Equal(t, seen[len(seen)-1], old.PoolSize, "old is the value seen just before")
		}
		seen = append(seen, new.PoolSize)
	})
	defer cancel()
	<-done
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1] == 300
	}, 2*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seen); i++ {
		assert.Less(t, seen[i-1], seen[i])
	}
}

// A Value in the fx graph starts and stops itself: a module that forgets
// hooks still runs on the source's config, not on defaults.
func TestProvideValueStartsItself(t *testing.T) {
	src := config.NewMemorySource()
	src.Set(serviceKey, []byte(`{"poolSize":33}`))
	var v *config.Value[testConfig]
	var values *config.Values
	var agg *lifecycle.Aggregator
	app := fxtest.New(t,
		fx.Supply(testID, fx.Annotate(src, fx.As(new(config.Source)))),
		fx.Provide(func() *lifecycle.Aggregator { return lifecycle.NewAggregator(nil, lifecycle.AggregatorOptions{}) }),
		config.Module,
		fx.Provide(config.ProvideValue[testConfig]("cache")),
		fx.Populate(&v, &values, &agg),
	)
	app.RequireStart()
	assert.Equal(t, 33, v.Get().PoolSize)
	st, ok := values.Status("cache")
	require.True(t, ok)
	assert.Equal(t, config.OriginSource, st.Origin)

	rev := src.Set(serviceKey, []byte(`{"poolSize":-1}`))
	waitRevision(t, v, rev)
	rep := agg.Check(context.Background())
	assert.Equal(t, lifecycle.Degraded, rep.State, "a refused document shows, and readiness still passes")
	details := rep.Checks["config"].Details["cache"].(map[string]any)
	assert.Contains(t, details["refused"].(map[string]any)["error"], "poolSize")
	app.RequireStop()
}

func TestValueBootFromSnapshotShowsItsAge(t *testing.T) {
	snap := config.NewSnapshot(filepath.Join(t.TempDir(), "snap.json"), "")
	require.NoError(t, snap.Save(config.Document{Key: serviceKey, Data: []byte(`{"poolSize":5}`), Revision: 3}))
	old := time.Now().Add(-2 * time.Hour)
	// Age the file's own record, as a snapshot left by an earlier run.
	b, err := os.ReadFile(snap.Path())
	require.NoError(t, err)
	b = []byte(strings.Replace(string(b), time.Now().UTC().Format("2006-01-02"), old.UTC().Format("2006-01-02"), 1))
	require.NoError(t, os.WriteFile(snap.Path(), b, 0o600))

	src := config.NewMemorySource()
	src.SetDown(true)
	core, logs := observer.New(zapcore.InfoLevel)
	v := startValue(t, src, config.WithSnapshot(config.NewSnapshot(snap.Path(), "")), config.WithLoadTimeout(20*time.Millisecond), config.WithLogger(zap.New(core)))
	assert.Equal(t, 5, v.Get().PoolSize)
	st := v.Status()
	assert.Equal(t, config.OriginSnapshot, st.Origin)
	assert.False(t, st.SavedAt.IsZero())
	entries := logs.FilterMessageSnippet("last-known-good snapshot").All()
	require.Len(t, entries, 1)
	assert.Contains(t, entries[0].ContextMap(), "snapshot_age")
	assert.Equal(t, snap.Path(), entries[0].ContextMap()["snapshot"])
}

// A snapshot left by a run against another config source (another etcd
// cluster) is not booted from: the Value says why and runs on defaults.
func TestValueIgnoresASnapshotOfAnotherSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap.json")
	require.NoError(t, config.NewSnapshot(path, "etcd http://old-cluster:2379").
		Save(config.Document{Key: serviceKey, Data: []byte(`{"poolSize":5}`), Revision: 3}))

	src := config.NewMemorySource()
	src.SetDown(true)
	core, logs := observer.New(zapcore.InfoLevel)
	v := startValue(t, src, config.WithSnapshot(config.NewSnapshot(path, "etcd http://etcd:2379")),
		config.WithLoadTimeout(20*time.Millisecond), config.WithLogger(zap.New(core)))
	assert.Equal(t, 10, v.Get().PoolSize, "defaults, not the other cluster's config")
	assert.Equal(t, config.OriginDefaults, v.Status().Origin)
	entry := logs.FilterMessageSnippet("written for another config source").All()
	require.Len(t, entry, 1)
	assert.Contains(t, entry[0].ContextMap()["error"], "old-cluster")

	// The same source is booted from.
	v2 := startValue(t, src, config.WithSnapshot(config.NewSnapshot(path, "etcd http://old-cluster:2379")),
		config.WithLoadTimeout(20*time.Millisecond))
	assert.Equal(t, 5, v2.Get().PoolSize)
}
