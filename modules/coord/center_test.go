package coord

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord/coordtest"
)

func TestCenterGetSetDeleteList(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cen := NewCenter(cliNew(t, cliConfig(e)))
	ctx := context.Background()
	p := "/config/dev/center/"

	_, ok, err := cen.Get(ctx, p+"a")
	require.NoError(t, err)
	assert.False(t, ok)

	rev, err := cen.Set(ctx, p+"a", []byte(`{"a":1}`))
	require.NoError(t, err)
	got, ok, err := cen.Get(ctx, p+"a")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, Entry{Key: p + "a", Value: []byte(`{"a":1}`), Revision: rev, ModRevision: rev, Version: 1}, got)

	_, err = cen.Set(ctx, p+"b", []byte(`2`))
	require.NoError(t, err)
	_, err = cen.Set(ctx, "/config/dev/centerx", []byte(`outside the prefix`))
	require.NoError(t, err)
	list, err := cen.List(ctx, p)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, p+"a", list[0].Key)
	assert.Equal(t, p+"b", list[1].Key)

	existed, err := cen.Delete(ctx, p+"a")
	require.NoError(t, err)
	assert.True(t, existed)
	existed, err = cen.Delete(ctx, p+"a")
	require.NoError(t, err)
	assert.False(t, existed)

	for name, call := range map[string]func() error{
		"get":    func() error { _, _, err := cen.Get(ctx, ""); return err },
		"set":    func() error { _, err := cen.Set(ctx, "", nil); return err },
		"delete": func() error { _, err := cen.Delete(ctx, ""); return err },
		"list":   func() error { _, err := cen.List(ctx, ""); return err },
	} {
		err := call()
		assert.True(t, errors.Is(err, lifecycle.ErrValidation), "%s with an empty key: %v", name, err)
	}
}

func TestCenterSetJSON(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cen := NewCenter(cliNew(t, cliConfig(e)))
	ctx := context.Background()
	key := "/config/dev/svc/json"
	_, err := cen.SetJSON(ctx, key, []byte(`{"level":"info"}`))
	require.NoError(t, err)
	_, err = cen.SetJSON(ctx, key, []byte(`{"level":`))
	require.Error(t, err)
	assert.True(t, errors.Is(err, lifecycle.ErrConfig), "got %v", err)
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, key, ie.Field)
	assert.Equal(t, "set", ie.Op)
	got, _, err := cen.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, `{"level":"info"}`, string(got.Value), "the invalid document never reached etcd")
}

func TestCenterCompareAndSet(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cen := NewCenter(cliNew(t, cliConfig(e)))
	ctx := context.Background()
	key := "/config/dev/svc/cas"

	ok, err := cen.CompareAndSet(ctx, key, []byte("v1"), 0)
	require.NoError(t, err)
	assert.True(t, ok, "0 creates a missing key")
	ok, err = cen.CompareAndSet(ctx, key, []byte("again"), 0)
	require.NoError(t, err)
	assert.False(t, ok, "0 refuses an existing key")

	cur, _, err := cen.Get(ctx, key)
	require.NoError(t, err)
	// Two editors read the same revision; only the first write wins.
	ok, err = cen.CompareAndSet(ctx, key, []byte("alice"), cur.ModRevision)
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = cen.CompareAndSet(ctx, key, []byte("bob"), cur.ModRevision)
	require.NoError(t, err)
	assert.False(t, ok, "a stale mod revision is a conflict, not an error")
	got, _, err := cen.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, "alice", string(got.Value))

	_, err = cen.CompareAndSet(ctx, key, nil, -1)
	assert.True(t, errors.Is(err, lifecycle.ErrValidation))
}

func TestCenterHistory(t *testing.T) {
	e := coordtest.StartEtcd(t)
	raw := coordtest.RawClient(t, e.Endpoints()...)
	cen := NewCenter(cliNew(t, cliConfig(e)))
	ctx := context.Background()
	key := "/config/dev/svc/hist"

	// An earlier incarnation of the key is not part of its history.
	_, err := cen.Set(ctx, key, []byte("old life"))
	require.NoError(t, err)
	_, err = cen.Delete(ctx, key)
	require.NoError(t, err)
	var revs []int64
	for i := range 5 {
		r, err := cen.Set(ctx, key, []byte(fmt.Sprint("v", i)))
		require.NoError(t, err)
		revs = append(revs, r)
		_, err = cen.Set(ctx, key+"-noise", []byte("x"))
		require.NoError(t, err)
	}

	h, err := cen.History(ctx, key, 0)
	require.NoError(t, err)
	require.Len(t, h, 5)
	for i, en := range h {
		assert.Equal(t, fmt.Sprint("v", 4-i), string(en.Value), "newest first")
		assert.Equal(t, revs[4-i], en.ModRevision)
		assert.Equal(t, int64(5-i), en.Version)
	}

	h, err = cen.History(ctx, key, 2)
	require.NoError(t, err)
	require.Len(t, h, 2)
	assert.Equal(t, "v4", string(h[0].Value))
	assert.Equal(t, "v3", string(h[1].Value))

	// Compaction cuts history short without an error.
	_, err = raw.Compact(ctx, revs[2])
	require.NoError(t, err)
	h, err = cen.History(ctx, key, 0)
	require.NoError(t, err)
	require.Len(t, h, 3)
	assert.Equal(t, "v2", string(h[2].Value))

	h, err = cen.History(ctx, "/config/dev/svc/never", 0)
	require.NoError(t, err)
	assert.Empty(t, h)
}

func TestCenterWatch(t *testing.T) {
	e := coordtest.StartEtcd(t)
	cen := NewCenter(cliNew(t, cliConfig(e)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := "/config/dev/watch/"

	all := cen.Watch(ctx, p, true)
	one := cen.Watch(ctx, p+"a", false)
	_, err := cen.Set(ctx, p+"a", []byte("1"))
	require.NoError(t, err)
	_, err = cen.Set(ctx, p+"b", []byte("2"))
	require.NoError(t, err)
	_, err = cen.Delete(ctx, p+"a")
	require.NoError(t, err)

	next := func(ch <-chan Event) Event {
		t.Helper()
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "channel closed early")
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
			return Event{}
		}
	}
	ev := next(all)
	assert.Equal(t, Put, ev.Type)
	assert.Equal(t, p+"a", ev.Entry.Key)
	assert.Equal(t, "1", string(ev.Entry.Value))
	ev = next(all)
	assert.Equal(t, p+"b", ev.Entry.Key)
	ev = next(all)
	assert.Equal(t, Delete, ev.Type)
	assert.Equal(t, p+"a", ev.Entry.Key)
	assert.Nil(t, ev.Entry.Value)
	assert.Equal(t, "DELETE", ev.Type.String())

	assert.Equal(t, Put, next(one).Type)
	assert.Equal(t, Delete, next(one).Type)

	cancel()
	for _, ch := range []<-chan Event{all, one} {
		select {
		case _, ok := <-ch:
			for ok {
				_, ok = <-ch
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Watch channel not closed after ctx ended")
		}
	}
	_, ok := <-cen.Watch(context.Background(), "", false)
	assert.False(t, ok, "an empty key gives a closed channel")
}
