package cache

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/gochat/im-infra/lifecycle"
)

// Loader produces the value GetOrLoad stores on a miss (through Encode),
// typically from the database. It gets a ctx bounded by loadTimeout that
// ends when the client closes.
type Loader func(ctx context.Context) (any, error)

// placeholderPrefix starts the value a loader's claim leaves at a key
// while it loads. No Encode output starts with a NUL byte followed by this
// text unless the caller stored such a string on purpose; reads of this
// package treat it as a miss.
const placeholderPrefix = "\x00im-infra:loading:"

func isPlaceholder(v string) bool { return strings.HasPrefix(v, placeholderPrefix) }

const (
	// KEYS[1] key; ARGV[1] our placeholder, ARGV[2] value, ARGV[3] ttl ms.
	// Stores the value only if our claim is still there: an Invalidate
	// during the load deletes the claim, so a value loaded before the
	// writer's change is not cached.
	asideFillLua = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`
	// Removes our claim after a failed load, so the next caller retries
	// at once instead of waiting for the claim to expire.
	asideReleaseLua = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`
)

// GetCached reads key through the client-side cache: a hit costs no round
// trip; a miss asks Redis and caches the answer for at most ttl (0: the
// configured clientCache.ttl), or less if the key expires sooner. Redis
// invalidates the cached copy as soon as the key changes, from any client
// (RESP3 CLIENT TRACKING). Without tracking (Redis < 6, miniredis, or
// clientCache.disabled) it is a plain Get.
func (c *Client) GetCached(ctx context.Context, key string, ttl time.Duration) (_ string, err error) {
	defer c.handle(ctx, &err)
	return c.getCached(ctx, key, ttl)
}

func (c *Client) getCached(ctx context.Context, key string, ttl time.Duration) (string, error) {
	s, l, err := c.acquire()
	if err != nil {
		return "", wrap(cmdGet, key, err)
	}
	if !s.tracking {
		return c.get(ctx, key)
	}
	if ttl <= 0 {
		ttl = l.localTTL
	}
	start := time.Now()
	full := l.full(key)
	if c.recent.has(full, start) {
		return c.get(ctx, key)
	}
	callCtx, cancel := c.bound(ctx, l.timeout, start)
	res := s.rc.DoCache(callCtx, s.rc.B().Get().Key(full).Cache(), ttl)
	cancel()
	err = res.Error()
	if res.IsCacheHit() {
		c.metrics.ccHits.Add(ctx, 1)
	} else {
		c.metrics.ccMisses.Add(ctx, 1)
		// Only a miss went to Redis, so only a miss is a command.
		ctx, span := c.startSpan(ctx, cmdGet)
		c.observe(ctx, cmdGet, start, err, span)
	}
	if err != nil {
		return "", wrap(cmdGet, key, err)
	}
	v, err := res.ToString()
	if err != nil {
		return "", resultError(cmdGet, key, err)
	}
	if isPlaceholder(v) {
		return "", ErrMiss
	}
	return v, nil
}

// GetOrLoad returns the value of key, calling loader to produce and store
// it (for ttl; 0: the configured defaultTTL) when it is missing. Reads go
// through the client-side cache, so a hot key costs no round trip.
//
// On a miss, one caller per key in this process loads; the others wait for
// its result (each until its own ctx ends). Across processes, the loading
// caller first claims the key in Redis for loadTimeout, and callers in
// other processes wait for the value instead of loading too.
//
// A loader error is returned to the callers that waited for it and never
// cached; the next call loads again. An Invalidate (or any write, or
// delete) of the key during a load keeps the loaded value from being
// cached, so a writer's change is never overwritten by older data.
//
// When Redis cannot be reached, the loader is called (still once per key
// in this process) and its value returned without caching: the cache
// degrades to the database rather than failing.
func (c *Client) GetOrLoad(ctx context.Context, key string, ttl time.Duration, loader Loader) (_ string, err error) {
	defer c.handle(ctx, &err)
	if loader == nil {
		return "", &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: commandNames[cmdAsideClaim], Field: key, Message: "nil loader"}
	}
	v, err := c.getCached(ctx, key, 0)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, ErrMiss) && !isUnavailable(err) {
		return "", err
	}
	_, l, err := c.acquire()
	if err != nil {
		return "", wrap(cmdAsideClaim, key, err)
	}
	if ttl <= 0 {
		ttl = l.defaultTTL
	}
	full := l.full(key)
	ch := c.loads.DoChan(full, func() (any, error) { return c.load(ctx, key, ttl, loader) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", wrap(cmdAsideClaim, key, ctx.Err())
	}
}

// isUnavailable reports a failure that cache-aside rides out by loading.
func isUnavailable(err error) bool {
	t := lifecycle.TypeOf(err)
	return t == lifecycle.TypeConnection || t == lifecycle.TypeTimeout
}

// load runs in the singleflight goroutine of one key: claim, load, fill.
// Its ctx keeps the first caller's values but not its cancellation (the
// other waiters still want the result), and is bounded by loadTimeout and
// by Close.
func (c *Client) load(callerCtx context.Context, key string, ttl time.Duration, loader Loader) (any, error) {
	s, l, err := c.acquire()
	if err != nil {
		return nil, wrap(cmdAsideClaim, key, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, wrap(cmdAsideClaim, key, errNotStarted)
	}
	c.loaders.Add(1)
	c.mu.Unlock()
	defer c.loaders.Done()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(callerCtx), l.loadTimeout)
	defer cancel()
	stop := context.AfterFunc(c.life, cancel)
	defer stop()

	full := l.full(key)
	claim := placeholderPrefix + newOwnerToken()
	claimed, value, err := c.claim(ctx, s, l, key, full, claim)
	switch {
	case err != nil && !isUnavailable(err):
		return nil, err
	case err == nil && !claimed:
		return value, nil // another process loaded it
	}
	// Claimed, or Redis is unreachable (then load without caching).
	v, lerr := loader(ctx)
	if lerr == nil {
		value, lerr = Encode(v)
		if lerr != nil {
			lerr = encodeError(cmdAsideFill, key, lerr)
		}
	}
	// The release and the fill run even when the load used up its ctx
	// (or Close cancelled it), each bounded by commandTimeout: a claim
	// left behind would make other processes wait for it to expire.
	after := context.WithoutCancel(ctx)
	if lerr != nil {
		c.metrics.loads.Add(ctx, 1, c.metrics.loadKO...)
		if claimed {
			_ = c.script(after, s, l, cmdAsideRelease, s.scripts.asideRelease, []string{full}, claim)
		}
		return nil, lerr
	}
	c.metrics.loads.Add(ctx, 1, c.metrics.loadOK...)
	if claimed {
		// Whether or not the fill lands (an Invalidate may have removed
		// the claim), this value is what the loader returned just now.
		_ = c.script(after, s, l, cmdAsideFill, s.scripts.asideFill, []string{full}, claim, value, strconv.FormatInt(millis(ttl), 10))
	}
	return value, nil
}

// claim takes the right to load key by setting a placeholder with NX for
// loadTimeout. If another process holds the claim, it waits (polling with
// backoff from 5ms to 100ms) until the value appears, the claim vanishes
// (then it tries to claim again), or ctx ends. It returns claimed=true,
// or the value someone else stored, or an error.
func (c *Client) claim(ctx context.Context, s *session, l *live, key, full, placeholder string) (bool, string, error) {
	backoff := 5 * time.Millisecond
	for {
		res := c.do(ctx, s, l, cmdAsideClaim, s.rc.B().Set().Key(full).Value(placeholder).Nx().PxMilliseconds(millis(l.loadTimeout)).Build())
		err := res.Error()
		if err == nil {
			return true, "", nil
		}
		if !rueidis.IsRedisNil(err) {
			return false, "", wrap(cmdAsideClaim, key, err)
		}
		// Held: by a value (done) or by another loader's claim (wait).
		v, err := c.do(ctx, s, l, cmdGet, s.rc.B().Get().Key(full).Build()).ToString()
		switch {
		case err == nil && !isPlaceholder(v):
			return false, v, nil
		case err != nil && !rueidis.IsRedisNil(err):
			return false, "", wrap(cmdGet, key, err)
		case err == nil: // a claim: wait for its owner
			select {
			case <-ctx.Done():
				return false, "", wrap(cmdAsideClaim, key, ctx.Err())
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 100*time.Millisecond)
		}
		// Gone meanwhile: claim again at once.
	}
}

// Invalidate deletes keys so that the next read loads fresh data: writers
// call it after changing the source of truth. Redis then tells every
// client that cached the keys to drop them (other processes see that
// within the time the invalidation message takes to arrive, typically well
// under a millisecond), and a GetOrLoad loading one of them concurrently
// does not store its (possibly older) value. In this process the next
// cached read of the keys sees the change at once: for a second they are
// read from Redis, not memory, which covers the message still in flight.
// Keys may be in any cluster slots.
func (c *Client) Invalidate(ctx context.Context, keys ...string) (err error) {
	defer c.handle(ctx, &err)
	if len(keys) == 0 {
		return nil
	}
	s, l, err := c.acquire()
	if err != nil {
		return wrap(cmdDel, keys[0], err)
	}
	cmds := make([]rueidis.Completed, len(keys))
	now := time.Now()
	for i, k := range keys {
		full := l.full(k)
		c.loads.Forget(full) // later callers must not join a load that began before the change
		c.recent.add(full, now)
		cmds[i] = s.rc.B().Del().Key(full).Build()
	}
	for i, res := range c.doMulti(ctx, s, l, cmdDel, cmds) {
		if err := res.Error(); err != nil {
			return wrap(cmdDel, keys[i], err)
		}
	}
	return nil
}

// invalidationGrace is how long this client reads a key it invalidated
// from Redis rather than from memory: far longer than an invalidation
// message takes to arrive, short enough to cost nothing measurable.
const invalidationGrace = time.Second

// recentInvalidations remembers the keys this client invalidated within
// invalidationGrace. Its fast path, when there are none, is one atomic
// load.
type recentInvalidations struct {
	n atomic.Int64
	m sync.Map // full key -> time.Time of the invalidation
}

func (r *recentInvalidations) add(key string, now time.Time) {
	if _, loaded := r.m.Swap(key, now); !loaded {
		if r.n.Add(1) > 4096 {
			r.sweep(now)
		}
	}
}

func (r *recentInvalidations) has(key string, now time.Time) bool {
	if r.n.Load() == 0 {
		return false
	}
	v, ok := r.m.Load(key)
	if !ok {
		return false
	}
	if now.Sub(v.(time.Time)) < invalidationGrace {
		return true
	}
	if r.m.CompareAndDelete(key, v) {
		r.n.Add(-1)
	}
	return false
}

// sweep drops expired entries of keys that were never read again.
func (r *recentInvalidations) sweep(now time.Time) {
	r.m.Range(func(k, v any) bool {
		if now.Sub(v.(time.Time)) >= invalidationGrace && r.m.CompareAndDelete(k, v) {
			r.n.Add(-1)
		}
		return true
	})
}
