package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/lifecycle"
)

type user struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// exerciseOperations runs every operation of Cache against c. In a cluster
// the multi-key calls use one hash tag. It is shared by the standalone and
// cluster tests.
func exerciseOperations(t *testing.T, c *Client) {
	ctx := context.Background()
	t.Run("strings", func(t *testing.T) {
		_, err := c.Get(ctx, "missing")
		require.ErrorIs(t, err, ErrMiss)

		require.NoError(t, c.Set(ctx, "s", "hello", 0))
		v, err := c.Get(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, "hello", v)
		ttl, err := c.TTL(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, NoTTL, ttl)

		require.NoError(t, c.Set(ctx, "exp", []byte{0, 1, 2}, time.Minute))
		ttl, err = c.TTL(ctx, "exp")
		require.NoError(t, err)
		assert.InDelta(t, time.Minute.Seconds(), ttl.Seconds(), 2)
		v, err = c.Get(ctx, "exp")
		require.NoError(t, err)
		assert.Equal(t, string([]byte{0, 1, 2}), v)

		_, err = c.TTL(ctx, "missing")
		require.ErrorIs(t, err, ErrMiss)

		ok, err := c.SetNX(ctx, "nx", 1, time.Minute)
		require.NoError(t, err)
		assert.True(t, ok)
		ok, err = c.SetNX(ctx, "nx", 2, time.Minute)
		require.NoError(t, err)
		assert.False(t, ok, "SetNX on an existing key")
		ok, err = c.SetNX(ctx, "nx-forever", "x", 0)
		require.NoError(t, err)
		assert.True(t, ok)

		v, err = c.GetDel(ctx, "nx")
		require.NoError(t, err)
		assert.Equal(t, "1", v)
		_, err = c.GetDel(ctx, "nx")
		require.ErrorIs(t, err, ErrMiss)

		u := user{ID: 7, Name: "ann"}
		require.NoError(t, c.Set(ctx, "json", u, time.Minute))
		raw, err := c.Get(ctx, "json")
		require.NoError(t, err)
		var back user
		require.NoError(t, Decode(raw, &back))
		assert.Equal(t, u, back)

		n, err := c.Incr(ctx, "ctr")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		n, err = c.IncrBy(ctx, "ctr", 41)
		require.NoError(t, err)
		assert.Equal(t, int64(42), n)
		n, err = c.Decr(ctx, "ctr")
		require.NoError(t, err)
		assert.Equal(t, int64(41), n)

		ok, err = c.Expire(ctx, "ctr", 30*time.Second)
		require.NoError(t, err)
		assert.True(t, ok)
		ok, err = c.Expire(ctx, "missing", time.Second)
		require.NoError(t, err)
		assert.False(t, ok)

		// Multi-key calls: one hash tag keeps them in one cluster slot.
		require.NoError(t, c.MSet(ctx, map[string]any{"{m}a": "1", "{m}b": 2.5, "{m}c": true}))
		got, err := c.MGet(ctx, "{m}a", "{m}b", "{m}c", "{m}missing")
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"{m}a": "1", "{m}b": "2.5", "{m}c": "1"}, got)
		cnt, err := c.Exists(ctx, "{m}a", "{m}b", "{m}missing")
		require.NoError(t, err)
		assert.Equal(t, int64(2), cnt)
		require.NoError(t, c.Del(ctx, "{m}a", "{m}b"))
		cnt, err = c.Exists(ctx, "{m}a", "{m}b", "{m}c")
		require.NoError(t, err)
		assert.Equal(t, int64(1), cnt)
	})

	t.Run("hashes", func(t *testing.T) {
		_, err := c.HGet(ctx, "h", "f")
		require.ErrorIs(t, err, ErrMiss)
		require.NoError(t, c.HSet(ctx, "h", "name", "bob"))
		require.NoError(t, c.HSet(ctx, "h", "age", 30))
		v, err := c.HGet(ctx, "h", "name")
		require.NoError(t, err)
		assert.Equal(t, "bob", v)
		all, err := c.HGetAll(ctx, "h")
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"name": "bob", "age": "30"}, all)
		n, err := c.HIncrBy(ctx, "h", "age", 2)
		require.NoError(t, err)
		assert.Equal(t, int64(32), n)
		some, err := c.HMGet(ctx, "h", "name", "nope")
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"name": "bob"}, some)
		n, err = c.HDel(ctx, "h", "name", "nope")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		empty, err := c.HGetAll(ctx, "missing-hash")
		require.NoError(t, err)
		assert.Empty(t, empty)
	})

	t.Run("sets", func(t *testing.T) {
		require.NoError(t, c.SAdd(ctx, "set", "a", "b", 3))
		members, err := c.SMembers(ctx, "set")
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"a", "b", "3"}, members)
		in, err := c.SIsMember(ctx, "set", 3)
		require.NoError(t, err)
		assert.True(t, in)
		in, err = c.SIsMember(ctx, "set", "z")
		require.NoError(t, err)
		assert.False(t, in)
		n, err := c.SRem(ctx, "set", "a", "z")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		n, err = c.SCard(ctx, "set")
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
	})

	t.Run("sorted sets", func(t *testing.T) {
		n, err := c.ZAdd(ctx, "z", Z{1, "one"}, Z{2, "two"}, Z{3, "three"})
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)
		r, err := c.ZRange(ctx, "z", 0, -1)
		require.NoError(t, err)
		assert.Equal(t, []string{"one", "two", "three"}, r)
		r, err = c.ZRevRange(ctx, "z", 0, 1)
		require.NoError(t, err)
		assert.Equal(t, []string{"three", "two"}, r)
		r, err = c.ZRangeByScore(ctx, "z", "(1", "+inf")
		require.NoError(t, err)
		assert.Equal(t, []string{"two", "three"}, r)
		s, err := c.ZIncrBy(ctx, "z", 2.5, "one")
		require.NoError(t, err)
		assert.InDelta(t, 3.5, s, 1e-9)
		s, err = c.ZScore(ctx, "z", "one")
		require.NoError(t, err)
		assert.InDelta(t, 3.5, s, 1e-9)
		_, err = c.ZScore(ctx, "z", "nobody")
		require.ErrorIs(t, err, ErrMiss)
		n, err = c.ZRem(ctx, "z", "two", "nobody")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
		n, err = c.ZCard(ctx, "z")
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
	})

	t.Run("lists", func(t *testing.T) {
		n, err := c.RPush(ctx, "l", "b", "c")
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
		n, err = c.LPush(ctx, "l", "a")
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)
		r, err := c.LRange(ctx, "l", 0, -1)
		require.NoError(t, err)
		assert.Equal(t, []string{"a", "b", "c"}, r)
		require.NoError(t, c.LTrim(ctx, "l", 1, -1))
		n, err = c.LLen(ctx, "l")
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
	})

	t.Run("scripts", func(t *testing.T) {
		const script = `redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])`
		r, err := c.Eval(ctx, script, []string{"{sc}a", "{sc}n"}, "v", 5)
		require.NoError(t, err)
		n, err := r.Int64()
		require.NoError(t, err)
		assert.Equal(t, int64(5), n)
		v, err := c.Get(ctx, "{sc}a")
		require.NoError(t, err)
		assert.Equal(t, "v", v)

		sha, err := c.ScriptLoad(ctx, script)
		require.NoError(t, err)
		r, err = c.EvalSha(ctx, sha, []string{"{sc}a", "{sc}n"}, "w", 1)
		require.NoError(t, err)
		text, err := r.Text()
		require.NoError(t, err)
		assert.Equal(t, "6", text)

		_, err = c.EvalSha(ctx, "0000000000000000000000000000000000000000", []string{"{sc}a"})
		require.Error(t, err)
		assert.True(t, errors.Is(err, lifecycle.ErrValidation), "unknown sha: %v", err)
		assert.Contains(t, err.Error(), "NOSCRIPT")

		_, err = c.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{"{sc}missing"})
		require.ErrorIs(t, err, ErrMiss, "a nil script reply is a miss")
		_, err = c.Eval(ctx, "return redis.error_reply('boom')", nil)
		require.ErrorIs(t, err, lifecycle.ErrValidation)
	})

	t.Run("pipeline", func(t *testing.T) {
		replies, err := c.Pipeline(ctx,
			Cmd{Name: "SET", Keys: []string{"p1"}, Args: []any{"x", "PX", 60000}},
			Cmd{Name: "INCRBY", Keys: []string{"p2"}, Args: []any{3}},
			Cmd{Name: "GET", Keys: []string{"p1"}},
			Cmd{Name: "GET", Keys: []string{"p-missing"}},
			Cmd{Name: "HSET", Keys: []string{"p1"}, Args: []any{"f", "v"}}, // WRONGTYPE
		)
		require.NoError(t, err)
		require.Len(t, replies, 5)
		require.NoError(t, replies[0].Err())
		n, err := replies[1].Int64()
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)
		s, err := replies[2].Text()
		require.NoError(t, err)
		assert.Equal(t, "x", s)
		require.ErrorIs(t, replies[3].Err(), ErrMiss)
		require.ErrorIs(t, replies[4].Err(), lifecycle.ErrValidation)
		assert.Contains(t, replies[4].Err().Error(), "WRONGTYPE")

		_, err = c.Pipeline(ctx, Cmd{Name: "BLPOP", Keys: []string{"q"}, Args: []any{0}})
		require.ErrorIs(t, err, lifecycle.ErrValidation, "blocking commands are refused")
		_, err = c.Pipeline(ctx, Cmd{Name: ""})
		require.ErrorIs(t, err, lifecycle.ErrValidation)
	})

	t.Run("ping", func(t *testing.T) {
		require.NoError(t, c.Ping(ctx))
	})
}

func TestOperations(t *testing.T) {
	c := newTestClient(t)
	exerciseOperations(t, c)
}

func TestKeyPrefixIsApplied(t *testing.T) {
	addr, _ := testRedis(t)
	c := newTestClient(t, func(c *Config) { c.Addresses = []string{addr} })
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v", time.Minute))
	raw := rawClient(t, addr, true)
	prefix := c.live.Load().prefix
	v, err := raw.Do(ctx, raw.B().Get().Key(prefix+"k").Build()).ToString()
	require.NoError(t, err)
	assert.Equal(t, "v", v, "the key is stored under the prefix")
	n, err := raw.Do(ctx, raw.B().Exists().Key("k").Build()).AsInt64()
	require.NoError(t, err)
	assert.Zero(t, n, "and not without it")
}

func TestWrongTypeIsValidationError(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "str", "x", time.Minute))
	_, err := c.HGet(ctx, "str", "f")
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, lifecycle.TypeValidation, ie.Type)
	assert.Equal(t, "hget", ie.Op)
	assert.Equal(t, "str", ie.Field, "the error names the key the caller used")
	assert.Contains(t, err.Error(), "WRONGTYPE")
}

func TestValueThatCannotBeEncoded(t *testing.T) {
	c := newTestClient(t)
	ctx := context.Background()
	type node struct {
		Next *node `json:"next"`
	}
	cyclic := &node{}
	cyclic.Next = cyclic
	for _, tc := range []struct {
		name  string
		value any
		want  string
	}{
		{"chan", make(chan int), "chan int"},
		{"func", func() {}, "func()"},
		{"complex", complex(1, 2), "complex128"},
		{"cycle", cyclic, "cycle"},
		{"nil", nil, "nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Set(ctx, "user:1", tc.value, time.Minute)
			var ie *lifecycle.InfraError
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, lifecycle.TypeValidation, ie.Type)
			assert.Equal(t, "set", ie.Op)
			assert.Equal(t, "user:1", ie.Field)
			assert.Contains(t, err.Error(), `field "user:1"`)
			assert.Contains(t, err.Error(), tc.want)
			_, err = c.Get(ctx, "user:1")
			require.ErrorIs(t, err, ErrMiss, "nothing was written")
		})
	}
	_, err := c.LPush(ctx, "list", "ok", make(chan int))
	require.ErrorIs(t, err, lifecycle.ErrValidation)
}

func TestNegativeExpirationIsRefused(t *testing.T) {
	c := newTestClient(t)
	err := c.Set(context.Background(), "k", "v", -time.Second)
	require.ErrorIs(t, err, lifecycle.ErrValidation)
}
