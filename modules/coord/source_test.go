package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

// cfgWatch runs src.Watch in a goroutine owned by the test and collects the
// documents; stop cancels it and returns Watch's error.
type cfgWatch struct {
	mu     sync.Mutex
	docs   []config.Document
	cancel context.CancelFunc
	done   chan error
	notify chan struct{}
}

func cfgStartWatch(t *testing.T, src *Source, rev int64, keys ...string) *cfgWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &cfgWatch{cancel: cancel, done: make(chan error, 1), notify: make(chan struct{}, 1)}
	go func() {
		w.done <- src.Watch(ctx, rev, func(d config.Document) {
			w.mu.Lock()
			w.docs = append(w.docs, d)
			w.mu.Unlock()
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}, keys...)
	}()
	t.Cleanup(func() { _ = w.stop() })
	return w
}

func (w *cfgWatch) stop() error {
	w.cancel()
	err, ok := <-w.done
	if !ok {
		return nil
	}
	close(w.done)
	return err
}

func (w *cfgWatch) got() []config.Document {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]config.Document(nil), w.docs...)
}

func (w *cfgWatch) waitFor(t *testing.T, n int, within time.Duration) []config.Document {
	t.Helper()
	require.Eventually(t, func() bool { return len(w.got()) >= n }, within, time.Millisecond, "want %d docs, got %d", n, len(w.got()))
	return w.got()
}

func TestSourceLoadSnapshot(t *testing.T) {
	e := coordtest.StartEtcd(t)
	raw := coordtest.RawClient(t, e.Endpoints()...)
	ctx := context.Background()
	_, err := raw.Put(ctx, "/config/dev/global/a", `{"x":1}`)
	require.NoError(t, err)
	put, err := raw.Put(ctx, "/config/dev/svc/a", ``)
	require.NoError(t, err)

	src := NewSource(cliNew(t, cliConfig(e)))
	assert.Equal(t, "etcd", src.Name())
	docs, rev, err := src.Load(ctx, "/config/dev/global/a", "/config/dev/svc/a", "/config/dev/missing")
	require.NoError(t, err)
	assert.Equal(t, put.Header.Revision, rev)
	require.Len(t, docs, 3)
	assert.Equal(t, `{"x":1}`, string(docs[0].Data))
	assert.True(t, docs[1].Exists(), "an empty value is not a missing key")
	assert.Equal(t, put.Header.Revision, docs[1].Revision)
	assert.False(t, docs[2].Exists())

	// More keys than one transaction may hold still read one snapshot.
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("/config/dev/many/%03d", i)
	}
	docs, rev2, err := src.Load(ctx, keys...)
	require.NoError(t, err)
	assert.Len(t, docs, 300)
	assert.Equal(t, rev, rev2)

	_, rev3, err := src.Load(ctx)
	require.NoError(t, err)
	assert.Equal(t, rev, rev3)
}

// TestSourceWatchNoGap writes while Load and Watch start and checks that every
// write after Load's revision arrives once, each key's in revision order,
// and nothing of a key outside the watched ones.
func TestSourceWatchNoGap(t *testing.T) {
	e := coordtest.StartEtcd(t)
	raw := coordtest.RawClient(t, e.Endpoints()...)
	ctx := context.Background()
	keys := []string{"/config/dev/global/c", "/config/dev/svc/c"}
	src := NewSource(cliNew(t, cliConfig(e)))

	const n = 200
	type write struct {
		key string
		rev int64
	}
	writes := make(chan write, n)
	go func() {
		defer close(writes)
		for i := range n {
			resp, err := raw.Put(ctx, keys[i%2], fmt.Sprintf(`{"n":%d}`, i))
			if err != nil {
				return
			}
			writes <- write{keys[i%2], resp.Header.Revision}
			if i == n/2 {
				// Another service's key, sorting between the two: never sent.
				_, _ = raw.Put(ctx, "/config/dev/other/c", `{}`)
			}
		}
	}()
	time.Sleep(5 * time.Millisecond) // let some writes land before Load
	_, rev, err := src.Load(ctx, keys...)
	require.NoError(t, err)
	w := cfgStartWatch(t, src, rev, keys...)

	want := map[string][]int64{}
	total, after := 0, 0
	for wr := range writes {
		total++
		if wr.rev > rev {
			want[wr.key] = append(want[wr.key], wr.rev)
			after++
		}
	}
	require.Equal(t, n, total, "writer failed")
	got := w.waitFor(t, after, 5*time.Second)
	revs := map[string][]int64{}
	for _, d := range got {
		revs[d.Key] = append(revs[d.Key], d.Revision)
	}
	assert.Equal(t, want, revs, "every write after the loaded revision, once, each key's in order")
	t.Logf("loaded at rev %d, %d of %d writes came after it", rev, after, n)

	_, err = raw.Delete(ctx, keys[0])
	require.NoError(t, err)
	got = w.waitFor(t, after+1, 5*time.Second)
	last := got[len(got)-1]
	assert.Equal(t, keys[0], last.Key)
	assert.Nil(t, last.Data, "a delete is delivered as nil Data")
	assert.False(t, last.Exists())

	assert.ErrorIs(t, w.stop(), context.Canceled)
}

func TestSourceWatchCompacted(t *testing.T) {
	e := coordtest.StartEtcd(t)
	raw := coordtest.RawClient(t, e.Endpoints()...)
	ctx := context.Background()
	key := "/config/dev/svc/compact"
	src := NewSource(cliNew(t, cliConfig(e)))
	_, rev, err := src.Load(ctx, key)
	require.NoError(t, err)
	var last int64
	for i := range 5 {
		resp, err := raw.Put(ctx, key, fmt.Sprint(i))
		require.NoError(t, err)
		last = resp.Header.Revision
	}
	_, err = raw.Compact(ctx, last)
	require.NoError(t, err)

	err = NewSource(cliNew(t, cliConfig(e))).Watch(ctx, rev, func(config.Document) {
		t.Error("no document may be delivered from a compacted revision")
	}, key)
	require.Error(t, err)
	assert.True(t, errors.Is(err, lifecycle.ErrConnection), "got %v", err)
	assert.ErrorIs(t, err, rpctypes.ErrCompacted)
}

func TestSourceWatchClientClosed(t *testing.T) {
	e := coordtest.StartEtcd(t)
	c := cliNew(t, cliConfig(e))
	src := NewSource(c)
	_, rev, err := src.Load(context.Background(), "k")
	require.NoError(t, err)
	w := cfgStartWatch(t, src, rev, "k")
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, c.Close())
	select {
	case err := <-w.done:
		close(w.done)
		require.Error(t, err)
		assert.True(t, errors.Is(err, lifecycle.ErrConnection), "got %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after the client closed")
	}
}

// TestSourceWatchAcrossRestart stops etcd under a running watch, writes right
// after it is back, and measures how soon the write is seen. The watch
// either resumes (clientv3 reopens the stream from the next revision) or
// returns an error so the caller reloads; in both cases nothing is missed.
func TestSourceWatchAcrossRestart(t *testing.T) {
	e := coordtest.StartEtcd(t)
	raw := coordtest.RawClient(t, e.Endpoints()...)
	ctx := context.Background()
	key := "/config/dev/svc/restart"
	src := NewSource(cliNew(t, cliConfig(e)))
	_, err := raw.Put(ctx, key, "before")
	require.NoError(t, err)
	_, rev, err := src.Load(ctx, key)
	require.NoError(t, err)

	var (
		mu      sync.Mutex
		seen    = map[string]time.Time{}
		restart = make(chan error, 4)
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	// Plays config.Value's part: on error reload and watch again.
	go func() {
		defer close(done)
		from := rev
		for wctx.Err() == nil {
			err := src.Watch(wctx, from, func(d config.Document) {
				mu.Lock()
				seen[string(d.Data)] = time.Now()
				mu.Unlock()
				from = d.Revision
			}, key)
			if wctx.Err() != nil {
				return
			}
			restart <- err
			for wctx.Err() == nil {
				docs, r, lerr := src.Load(wctx, key)
				if lerr == nil {
					mu.Lock()
					seen[string(docs[0].Data)] = time.Now()
					mu.Unlock()
					from = r
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()

	_, err = raw.Put(ctx, key, "v1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return !seen["v1"].IsZero() }, 5*time.Second, time.Millisecond)

	e.Stop()
	time.Sleep(1500 * time.Millisecond)
	require.NoError(t, e.Restart())
	back := time.Now()
	// A fresh client writes: raw's own reconnect backoff would otherwise
	// delay the write itself, and we measure the watcher, not the writer.
	_, err = coordtest.RawClient(t, e.Endpoints()...).Put(ctx, key, "v2")
	require.NoError(t, err)
	put := time.Now()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return !seen["v2"].IsZero() }, 10*time.Second, time.Millisecond)
	mu.Lock()
	at := seen["v2"]
	mu.Unlock()
	cancel()
	<-done
	var watchErrs []error
	for len(restart) > 0 {
		watchErrs = append(watchErrs, <-restart)
	}
	t.Logf("after restart: raw put took %v; update seen %v after the put, %v after etcd was back; watch errors: %v",
		put.Sub(back), at.Sub(put), at.Sub(back), watchErrs)
	assert.Less(t, at.Sub(back), time.Second, "an update right after a restart is seen within 1s of etcd answering")
}

func TestSourceLoadEtcdDown(t *testing.T) {
	e := coordtest.StartEtcd(t)
	e.Stop()
	cfg := cliConfig(e)
	cfg.RequestTimeout = config.Duration(300 * time.Millisecond)
	src := NewSource(cliNew(t, cfg))
	start := time.Now()
	_, _, err := src.Load(context.Background(), "k")
	require.Error(t, err)
	assert.Less(t, time.Since(start), time.Second)
	assert.True(t, errors.Is(err, lifecycle.ErrTimeout) || errors.Is(err, lifecycle.ErrConnection), "got %v", err)
}

type cfgSchema struct {
	Level string `json:"level"`
	N     int    `json:"n"`
	// M is written as 2*N by the burst benchmark, so a reader can tell a
	// torn (half-applied) config from a whole one.
	M int `json:"m"`
}

func (cfgSchema) Defaults() cfgSchema { return cfgSchema{Level: "info", N: 1, M: 2} }

func (s cfgSchema) Validate() error {
	if s.N <= 0 {
		return lifecycle.ValidationError("test", "n", "must be positive")
	}
	return nil
}

var cfgIdentity = lifecycle.Identity{Service: "svc", Env: "dev", Instance: "svc-1", Version: "dev"}

// TestSourceValueBootEtcdDown boots a config.Value on this Source with etcd
// down, then brings etcd up and checks its config is applied.
func TestSourceValueBootEtcdDown(t *testing.T) {
	e := coordtest.StartEtcd(t)
	e.Stop()
	c := cliNew(t, cliConfig(e))
	v := config.NewValue[cfgSchema]("comp", NewSource(c), cfgIdentity)

	// As the fx module does: the client's probe first, then the loads,
	// which fail fast once the probe has found etcd down.
	start := time.Now()
	require.Error(t, c.Start(context.Background()))
	require.NoError(t, v.Start(context.Background()))
	took := time.Since(start)
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
	assert.Less(t, took, 3500*time.Millisecond, "start within ~3s with etcd down")
	assert.True(t, v.Degraded())
	assert.Equal(t, cfgSchema{}.Defaults(), v.Get())
	assert.Equal(t, lifecycle.Degraded, NewHealthChecker(c).Check(context.Background()).State)

	require.NoError(t, e.Restart())
	back := time.Now()
	_, err := coordtest.RawClient(t, e.Endpoints()...).Put(context.Background(), config.Key("dev", "svc", "comp"), `{"n":7}`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.Get().N == 7 && !v.Degraded() }, 5*time.Second, 5*time.Millisecond)
	t.Logf("probe + Value.Start with etcd down took %v; etcd's config applied %v after etcd was back", took, time.Since(back))
	assert.Equal(t, lifecycle.Healthy, NewHealthChecker(c).Check(context.Background()).State)
}
