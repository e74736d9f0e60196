package config_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is a component config of the usual shape.
type testConfig struct {
	Addr     string            `json:"addr"`
	PoolSize int               `json:"poolSize"`
	Timeout  config.Duration   `json:"timeout"`
	Password config.Secret     `json:"password"`
	Tags     map[string]string `json:"tags"`
	Limits   struct {
		MaxBytes int `json:"maxBytes"`
	} `json:"limits"`
}

func (testConfig) Defaults() testConfig {
	c := testConfig{Addr: "127.0.0.1:6379", PoolSize: 10, Timeout: config.Duration(5 * time.Second)}
	c.Limits.MaxBytes = 1024
	return c
}

func (c testConfig) Validate() error {
	if c.PoolSize <= 0 {
		return lifecycle.ValidationError("", "poolSize", fmt.Sprintf("must be > 0, got %d", c.PoolSize))
	}
	if c.Limits.MaxBytes < 0 {
		return lifecycle.ValidationError("", "limits.maxBytes", "must not be negative")
	}
	if c.Addr == "" {
		return errors.New("addr is empty")
	}
	return nil
}

var testID = lifecycle.Identity{Service: "im-repo", Env: "test", Instance: "i-1", Version: "dev"}

var (
	globalKey  = config.GlobalKey("test", "cache")
	serviceKey = config.Key("test", "im-repo", "cache")
)

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		layers    []config.Layer
		wantType  lifecycle.ErrorType
		wantField string
		check     func(t *testing.T, c testConfig)
	}{
		{name: "defaults only", check: func(t *testing.T, c testConfig) {
			assert.Equal(t, testConfig{}.Defaults(), c)
		}},
		{name: "layers merge", layers: []config.Layer{
			{Key: globalKey, Data: []byte(`{"poolSize":20,"tags":{"a":"1"}}`)},
			{Key: serviceKey, Data: []byte(`{"timeout":"250ms","tags":{"b":"2"}}`)},
		}, check: func(t *testing.T, c testConfig) {
			assert.Equal(t, 20, c.PoolSize)
			assert.Equal(t, 250*time.Millisecond, c.Timeout.Std())
			assert.Equal(t, map[string]string{"a": "1", "b": "2"}, c.Tags)
			assert.Equal(t, "127.0.0.1:6379", c.Addr)
		}},
		{name: "unknown field", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"poolsize":3}`)}},
			wantType: lifecycle.TypeConfig, wantField: "poolsize"},
		{name: "unknown nested field", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"limits":{"max":3}}`)}},
			wantType: lifecycle.TypeConfig, wantField: "limits.max"},
		{name: "wrong type", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"poolSize":"ten"}`)}},
			wantType: lifecycle.TypeConfig, wantField: "poolSize"},
		{name: "wrong nested type", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"limits":{"maxBytes":true}}`)}},
			wantType: lifecycle.TypeConfig, wantField: "limits.maxBytes"},
		{name: "malformed JSON", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"poolSize":`)}},
			wantType: lifecycle.TypeConfig},
		{name: "trailing data", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{} {}`)}},
			wantType: lifecycle.TypeConfig},
		{name: "empty document contributes nothing", layers: []config.Layer{
			{Key: globalKey, Data: []byte(`{"poolSize":20}`)}, {Key: serviceKey, Data: []byte(" \n")},
		}, check: func(t *testing.T, c testConfig) { assert.Equal(t, 20, c.PoolSize) }},
		{name: "null document contributes nothing", layers: []config.Layer{
			{Key: globalKey, Data: []byte(`{"poolSize":20}`)}, {Key: serviceKey, Data: []byte(`null`)},
		}, check: func(t *testing.T, c testConfig) { assert.Equal(t, 20, c.PoolSize) }},
		{name: "null field keeps the value below", layers: []config.Layer{
			{Key: globalKey, Data: []byte(`{"poolSize":20}`)}, {Key: serviceKey, Data: []byte(`{"poolSize":null}`)},
		}, check: func(t *testing.T, c testConfig) { assert.Equal(t, 20, c.PoolSize) }},
		{name: "array document", layers: []config.Layer{{Key: serviceKey, Data: []byte(`[1]`)}},
			wantType: lifecycle.TypeConfig},
		{name: "bad duration names its field", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"timeout":"fast"}`)}},
			wantType: lifecycle.TypeConfig, wantField: "timeout"},
		{name: "duration as number", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"timeout":5}`)}},
			wantType: lifecycle.TypeConfig, wantField: "timeout"},
		{name: "negative size", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"limits":{"maxBytes":-1}}`)}},
			wantType: lifecycle.TypeValidation, wantField: "limits.maxBytes"},
		{name: "zero pool", layers: []config.Layer{{Key: globalKey, Data: []byte(`{"poolSize":0}`)}},
			wantType: lifecycle.TypeValidation, wantField: "poolSize"},
		{name: "plain validate error", layers: []config.Layer{{Key: serviceKey, Data: []byte(`{"addr":""}`)}},
			wantType: lifecycle.TypeValidation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse[testConfig]("cache", tt.layers...)
			if tt.wantType == "" {
				require.NoError(t, err)
				tt.check(t, c)
				return
			}
			require.Error(t, err)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tt.wantType, ie.Type)
			assert.Equal(t, "cache", ie.Component)
			assert.Equal(t, tt.wantField, ie.Field)
			assert.Contains(t, err.Error(), "/config/test/")
		})
	}
}

func TestDuration(t *testing.T) {
	var d config.Duration
	require.NoError(t, json.Unmarshal([]byte(`"1m30s"`), &d))
	assert.Equal(t, 90*time.Second, d.Std())
	b, err := json.Marshal(d)
	require.NoError(t, err)
	assert.JSONEq(t, `"1m30s"`, string(b))
	for _, bad := range []string{`5`, `"5"`, `"fast"`, `null`, `{}`} {
		assert.Error(t, json.Unmarshal([]byte(bad), &d), bad)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := config.Secret("hunter2")
	assert.Equal(t, "hunter2", s.Reveal())
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		assert.NotContains(t, fmt.Sprintf(format, s), "hunter2", format)
	}
	cfg := testConfig{}.Defaults()
	cfg.Password = s
	assert.NotContains(t, fmt.Sprintf("%+v", cfg), "hunter2")
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "hunter2")
	assert.Contains(t, string(b), `"password":"******"`)

	core, logs := observer.New(zap.DebugLevel)
	zap.New(core).Info("cfg", zap.Any("password", s), zap.Stringer("p2", s), zap.Any("cfg", cfg))
	enc, err := json.Marshal(logs.All()[0].ContextMap())
	require.NoError(t, err)
	assert.NotContains(t, string(enc), "hunter2")
	assert.Equal(t, "", config.Secret("").String(), "an empty secret stays visibly empty")
}

func TestSecretFromEnv(t *testing.T) {
	t.Setenv("IMINFRA_TEST_SECRET", "from-env")
	var c testConfig
	require.NoError(t, json.Unmarshal([]byte(`{"password":"${IMINFRA_TEST_SECRET}"}`), &c))
	assert.Equal(t, "from-env", c.Password.Reveal())

	_, err := config.Parse[testConfig]("cache", config.Layer{Key: serviceKey, Data: []byte(`{"password":"${IMINFRA_TEST_UNSET_VAR}"}`)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "IMINFRA_TEST_UNSET_VAR")
	assert.True(t, errors.Is(err, lifecycle.ErrConfig))
}

func startValue(t *testing.T, src config.Source, opts ...config.ValueOption) *config.Value[testConfig] {
	t.Helper()
	v := config.NewValue[testConfig]("cache", src, testID, opts...)
	require.NoError(t, v.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, v.Stop(context.Background())) })
	return v
}

func TestValueLayersAndHotReload(t *testing.T) {
	src := config.NewMemorySource()
	src.Set(globalKey, []byte(`{"poolSize":20}`))
	v := startValue(t, src)
	assert.Equal(t, 20, v.Get().PoolSize)
	assert.False(t, v.Degraded())

	type change struct{ old, new int }
	changes := make(chan change, 10)
	cancel := v.Subscribe(func(o, n testConfig) { changes <- change{o.PoolSize, n.PoolSize} })
	defer cancel()
	assert.Equal(t, change{20, 20}, <-changes, "a subscriber first gets the current value")

	src.Set(serviceKey, []byte(`{"poolSize":30}`))
	assert.Equal(t, change{20, 30}, <-changes)
	assert.Equal(t, 30, v.Get().PoolSize)

	// A deleted service key falls back to the global layer.
	src.Delete(serviceKey)
	assert.Equal(t, change{30, 20}, <-changes)
	// A deleted global key falls back to defaults.
	src.Delete(globalKey)
	assert.Equal(t, change{20, 10}, <-changes)
}

func TestValueRefusesInvalidAndKeepsLastValid(t *testing.T) {
	src := config.NewMemorySource()
	core, logs := observer.New(zap.WarnLevel)
	v := startValue(t, src, config.WithLogger(zap.New(core)))
	calls := make(chan testConfig, 10)
	defer v.Subscribe(func(_, n testConfig) { calls <- n })()
	<-calls

	src.Set(serviceKey, []byte(`{"poolSize":7}`))
	require.Equal(t, 7, (<-calls).PoolSize)

	for _, bad := range []string{`{"poolSize":-1}`, `{"poolSize":`, `{"bogus":1}`, `{"poolSize":"x"}`} {
		src.Set(serviceKey, []byte(bad))
	}
	// The set stays invalid while the service layer is bad: a change to the
	// global layer is tried with it and refused too.
	rev := src.Set(globalKey, []byte(`{"addr":"10.0.0.1:6379"}`))
	require.Eventually(t, func() bool { return v.Revision() >= rev }, time.Second, time.Millisecond)
	assert.EqualValues(t, 5, v.Rejected())
	assert.Equal(t, 7, v.Get().PoolSize)
	assert.Equal(t, "127.0.0.1:6379", v.Get().Addr, "the last valid config stays whole")
	st := v.Status()
	require.NotNil(t, st.Refusal)
	assert.Equal(t, globalKey, st.Refusal.Key)
	refused := logs.FilterMessageSnippet("config refused").All()
	require.Len(t, refused, 5)
	assert.Contains(t, refused[2].ContextMap()["error"], `field "bogus"`)
	assert.Empty(t, calls)

	// A good service document makes the set valid: both layers apply.
	src.Set(serviceKey, []byte(`{"poolSize":8}`))
	got := <-calls
	assert.Equal(t, 8, got.PoolSize)
	assert.Equal(t, "10.0.0.1:6379", got.Addr)
	assert.Nil(t, v.Status().Refusal)
}

func TestValueBootsOnInvalidDocumentWithDefaults(t *testing.T) {
	src := config.NewMemorySource()
	src.Set(globalKey, []byte(`{"poolSize":20}`))
	src.Set(serviceKey, []byte(`{"poolSize":0}`))
	v := startValue(t, src)
	assert.Equal(t, 10, v.Get().PoolSize, "the set of layers is invalid: the last valid config (defaults) stays")
	assert.EqualValues(t, 1, v.Rejected())
	src.Set(serviceKey, []byte(`{"addr":"x:1"}`))
	require.Eventually(t, func() bool { return v.Get().PoolSize == 20 }, time.Second, time.Millisecond)
}

func TestValueSourceDownAtBoot(t *testing.T) {
	src := config.NewMemorySource()
	src.Set(serviceKey, []byte(`{"poolSize":42}`))
	src.SetDown(true)

	start := time.Now()
	v := startValue(t, src, config.WithLoadTimeout(200*time.Millisecond), config.WithRetry(10*time.Millisecond, 50*time.Millisecond))
	assert.Less(t, time.Since(start), time.Second)
	assert.True(t, v.Degraded())
	assert.Equal(t, 10, v.Get().PoolSize, "defaults while the source is down")

	src.SetDown(false)
	require.Eventually(t, func() bool { return v.Get().PoolSize == 42 }, 2*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return !v.Degraded() }, time.Second, 5*time.Millisecond)
}

func TestValueSnapshotAtBoot(t *testing.T) {
	snap := config.NewSnapshot(filepath.Join(t.TempDir(), "snap", "im-repo.json"), "")
	src := config.NewMemorySource()
	src.Set(globalKey, []byte(`{"poolSize":5}`))
	src.Set(serviceKey, []byte(`{"addr":"cache:6379"}`))
	v := config.NewValue[testConfig]("cache", src, testID, config.WithSnapshot(snap))
	require.NoError(t, v.Start(context.Background()))
	require.NoError(t, v.Stop(context.Background()))

	info, err := os.Stat(snap.Path())
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	down := config.NewMemorySource()
	down.SetDown(true)
	v2 := startValue(t, down, config.WithSnapshot(snap), config.WithLoadTimeout(50*time.Millisecond))
	assert.True(t, v2.Degraded())
	assert.Equal(t, 5, v2.Get().PoolSize)
	assert.Equal(t, "cache:6379", v2.Get().Addr)
}

func TestValueReloadsAfterWatchFailure(t *testing.T) {
	src := config.NewMemorySource()
	v := startValue(t, src, config.WithRetry(5*time.Millisecond, 20*time.Millisecond))
	loads := src.Loads()
	src.SetDown(true)
	// A change made while the watch is broken, then compacted away: a
	// watch resumed from the old revision fails, only a reload sees it.
	src.Set(serviceKey, []byte(`{"poolSize":99}`))
	src.Compact()
	src.SetDown(false)
	require.Eventually(t, func() bool { return v.Get().PoolSize == 99 }, 2*time.Second, 5*time.Millisecond)
	assert.Greater(t, src.Loads(), loads, "the value reloaded")
}

// TestValueGetDuringUpdatesIsRaceFree runs readers against a stream of
// updates; what it proves is that the race detector finds no unsynchronised
// access between Get and publication.
func TestValueGetDuringUpdatesIsRaceFree(t *testing.T) {
	src := config.NewMemorySource()
	v := startValue(t, src)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := v.Get()
				_ = c.PoolSize + c.Limits.MaxBytes + len(c.Tags)
			}
		})
	}
	for i := 1; i <= 200; i++ {
		src.Set(serviceKey, fmt.Appendf(nil, `{"poolSize":%d,"tags":{"n":"%d"}}`, i, i))
	}
	require.Eventually(t, func() bool { return v.Get().PoolSize == 200 }, 2*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()
}

func TestDirSource(t *testing.T) {
	root := t.TempDir()
	src := config.NewDirSource(root, 10*time.Millisecond)
	path, err := src.Path(serviceKey)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "test", "im-repo", "cache.json"), path)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(`{"poolSize":3}`), 0o644))

	v := startValue(t, src)
	assert.Equal(t, 3, v.Get().PoolSize)
	require.NoError(t, os.WriteFile(path, []byte(`{"poolSize":4}`), 0o644))
	require.Eventually(t, func() bool { return v.Get().PoolSize == 4 }, 2*time.Second, 5*time.Millisecond)
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool { return v.Get().PoolSize == 10 }, 2*time.Second, 5*time.Millisecond)

	_, err = src.Path("/other/x")
	assert.True(t, errors.Is(err, lifecycle.ErrConfig))
}

func TestSnapshotCorrupt(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.json")
	require.NoError(t, os.WriteFile(p, []byte(`{not json`), 0o600))
	_, _, err := config.NewSnapshot(p, "").Load(serviceKey)
	require.Error(t, err)
	assert.True(t, errors.Is(err, lifecycle.ErrConfig))
}

func TestValueSnapshotRefreshedWhenSourceReturns(t *testing.T) {
	snap := config.NewSnapshot(filepath.Join(t.TempDir(), "snap.json"), "")
	src := config.NewMemorySource()
	src.Set(serviceKey, []byte(`{"poolSize":8}`))
	src.SetDown(true)
	v := startValue(t, src, config.WithSnapshot(snap), config.WithLoadTimeout(50*time.Millisecond), config.WithRetry(5*time.Millisecond, 20*time.Millisecond))
	require.True(t, v.Degraded())
	src.SetDown(false)
	require.Eventually(t, func() bool { return v.Get().PoolSize == 8 }, 2*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		docs, _, err := snap.Load(serviceKey)
		return err == nil && len(docs) == 1 && string(docs[0].Data) == `{"poolSize":8}`
	}, 2*time.Second, 5*time.Millisecond, "the documents loaded on recovery are saved")
}

func TestSnapshotKeepsOtherComponentsAndSkipsUnchanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.json")
	a := config.NewSnapshot(p, "")
	require.NoError(t, a.Save(config.Document{Key: "/config/test/svc/a", Data: []byte(`{"x":1}`), Revision: 3}))

	// A new Snapshot on the same file (a restarted process) keeps a's
	// document when saving its own.
	b := config.NewSnapshot(p, "")
	require.NoError(t, b.Save(config.Document{Key: "/config/test/svc/b", Data: []byte(`{"y":2}`), Revision: 4}))
	docs, _, err := config.NewSnapshot(p, "").Load("/config/test/svc/a", "/config/test/svc/b")
	require.NoError(t, err)
	require.Len(t, docs, 2)

	require.NoError(t, os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0)))
	require.NoError(t, b.Save(config.Document{Key: "/config/test/svc/b", Data: []byte(`{"y":2}`), Revision: 4}))
	after, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, time.Unix(1, 0), after.ModTime(), "an unchanged document is not rewritten")
}
