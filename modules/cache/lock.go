package cache

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// The lock's scripts. A lock named k lives at "{prefix}lock:{k}" with the
// owner's random token as value and the lock's TTL; its fencing counter is
// "{prefix}lock:{k}:fence", which has no TTL so tokens keep growing across
// owners. Both keys carry the hash tag {k}, so they share a cluster slot.
const (
	// KEYS[1] lock, KEYS[2] fence; ARGV[1] owner, ARGV[2] ttl ms.
	// Returns the new fencing token, or 0 when the lock is held.
	lockAcquireLua = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0`
	// Returns 1 when the owner still held the lock and its TTL was reset.
	lockExtendLua = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`
	// Returns 1 when the owner held the lock and it was deleted.
	lockReleaseLua = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`
)

// Lock is a held Redis lock. While held it is extended in the background
// every TTL/3. Done is closed as soon as ownership can no longer be proven
// (an extension failed for long enough, or the key belongs to someone
// else), which is always before the TTL that Redis counts could let
// another owner in; Err then says why. Token is the fencing token: it
// grows with every acquisition of the same name, so a resource that
// remembers the highest token it has seen can refuse a stale owner.
type Lock struct {
	c     *Client
	key   string // as the caller named it
	full  string // the lock key in Redis
	fence string
	owner string
	token int64
	ttl   time.Duration

	done chan struct{}
	stop chan struct{} // closed by Unlock: ends the keepalive
	wg   sync.WaitGroup

	mu        sync.Mutex
	err       error // nil while held
	unlocked  bool
	unlockErr error
}

// Key is the name the lock was taken under.
func (l *Lock) Key() string { return l.key }

// Token is the fencing token of this acquisition, > 0.
func (l *Lock) Token() int64 { return l.token }

// Done is closed when the lock is no longer held: lost, or released by
// Unlock.
func (l *Lock) Done() <-chan struct{} { return l.done }

// Err is nil while the lock is held, ErrLockLost after ownership was lost
// and ErrLockReleased after Unlock.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// end closes Done once with err as the reason; it reports whether this
// call was the one that ended the lock.
func (l *Lock) end(err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return false
	}
	l.err = err
	close(l.done)
	return true
}

// lockSafety is how long before the TTL (counted from the start of the
// last successful acquire or extend) the owner gives up: a tenth of the
// TTL, at least 2ms. Redis counts the TTL from when it ran the command,
// which is later than that start, so Done always fires first.
func lockSafety(ttl time.Duration) time.Duration { return max(ttl/10, 2*time.Millisecond) }

// minLockTTL keeps the keepalive meaningful: three extensions per TTL and a
// safety margin need a few milliseconds each.
const minLockTTL = 30 * time.Millisecond

func lockKeys(l *live, key string) (full, fence string) {
	full = l.prefix + "lock:{" + key + "}"
	return full, full + ":fence"
}

func newOwnerToken() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// TryLock takes the lock named key for ttl if it is free, and returns
// ErrLockHeld at once if it is not. ttl must be at least 30ms.
func (c *Client) TryLock(ctx context.Context, key string, ttl time.Duration) (_ *Lock, err error) {
	defer c.handle(ctx, &err)
	return c.tryLock(ctx, key, ttl)
}

func (c *Client) tryLock(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	if ttl < minLockTTL {
		return nil, &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: commandNames[cmdLockAcquire], Field: key,
			Message: "lock ttl must be at least " + minLockTTL.String() + ", got " + ttl.String()}
	}
	s, l, err := c.acquire()
	if err != nil {
		return nil, wrap(cmdLockAcquire, key, err)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, wrap(cmdLockAcquire, key, errNotStarted)
	}
	full, fence := lockKeys(l, key)
	owner := newOwnerToken()
	start := time.Now()
	res := c.script(ctx, s, l, cmdLockAcquire, s.scripts.lockAcquire, []string{full, fence}, owner, strconv.FormatInt(ttl.Milliseconds(), 10))
	token, err := res.AsInt64()
	if err := res.Error(); err != nil {
		// Unless the script never reached Redis (no connection), the SET
		// may have happened before the reply was lost: release what we
		// may hold, or it blocks others until its TTL. In the background,
		// so the caller's call stays within its bound.
		if !neverSent(err) {
			c.releaseInBackground(s, l, full, owner)
		}
		return nil, wrap(cmdLockAcquire, key, err)
	}
	if err != nil {
		return nil, resultError(cmdLockAcquire, key, err)
	}
	if token == 0 {
		return nil, ErrLockHeld
	}
	lk := &Lock{c: c, key: key, full: full, fence: fence, owner: owner, token: token, ttl: ttl,
		done: make(chan struct{}), stop: make(chan struct{})}
	c.mu.Lock()
	if c.closed { // Close ran meanwhile and will not release this one
		c.mu.Unlock()
		c.releaseInBackground(s, l, full, owner)
		return nil, wrap(cmdLockAcquire, key, errNotStarted)
	}
	c.locks[lk] = struct{}{}
	lk.wg.Add(1)
	c.mu.Unlock()
	go lk.keepalive(start.Add(ttl))
	return lk, nil
}

// Lock takes the lock named key for ttl, waiting while another owner holds
// it, until ctx ends. Waiters poll with a jittered backoff from 2ms up to
// 50ms, so a released lock is taken within about 50ms. Connection errors
// while waiting are retried; when ctx ends the last error is returned.
func (c *Client) Lock(ctx context.Context, key string, ttl time.Duration) (_ *Lock, err error) {
	defer c.handle(ctx, &err)
	backoff := 2 * time.Millisecond
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		lk, err := c.tryLock(ctx, key, ttl)
		if err == nil {
			return lk, nil
		}
		if err != ErrLockHeld && lifecycle.TypeOf(err) != lifecycle.TypeConnection && lifecycle.TypeOf(err) != lifecycle.TypeTimeout {
			return nil, err
		}
		if ctx.Err() != nil {
			if err == ErrLockHeld {
				return nil, wrap(cmdLockAcquire, key, ctx.Err())
			}
			return nil, err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, 50*time.Millisecond)
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			if err == ErrLockHeld {
				return nil, wrap(cmdLockAcquire, key, ctx.Err())
			}
			return nil, err
		case <-c.life.Done():
			return nil, wrap(cmdLockAcquire, key, errNotStarted)
		case <-timer.C:
		}
	}
}

// keepalive extends the lock every ttl/3 until Unlock or Close, and ends
// it when ownership can no longer be proven before lostAt.
func (l *Lock) keepalive(validUntil time.Time) {
	defer l.wg.Done()
	c := l.c
	interval := l.ttl / 3
	safety := lockSafety(l.ttl)
	retry := max(l.ttl/20, time.Millisecond)
	next := time.Now().Add(interval)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		lostAt := validUntil.Add(-safety)
		select {
		case <-l.stop:
			return
		case <-c.life.Done():
			// Close releases the lock; until then it is still ours.
			<-l.stop
			return
		case <-timer.C:
		}
		now := time.Now()
		if !now.Before(lostAt) {
			l.lose("could not extend the lock before its TTL")
			return
		}
		s, lv, err := c.acquire()
		if err != nil {
			l.lose("client closed")
			return
		}
		ctx, cancel := context.WithDeadline(context.Background(), minTime(now.Add(lv.timeout), lostAt))
		res := c.script(ctx, s, lv, cmdLockExtend, s.scripts.lockExtend, []string{l.full}, l.owner, strconv.FormatInt(l.ttl.Milliseconds(), 10))
		cancel()
		ok, err := res.AsInt64()
		switch {
		case res.Error() == nil && err == nil && ok == 1:
			validUntil = now.Add(l.ttl)
			next = now.Add(interval)
		case res.Error() == nil:
			l.lose("the lock key is gone or has another owner")
			return
		default:
			// Redis did not answer: try again soon, and give up at lostAt.
			next = minTime(time.Now().Add(retry), validUntil.Add(-safety))
		}
		timer.Reset(time.Until(next))
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (l *Lock) lose(why string) {
	if l.end(ErrLockLost) {
		l.c.metrics.locksLost.Add(context.Background(), 1)
		l.c.log.Warn("lock lost", zap.String("lock", l.key), zap.Int64("token", l.token), zap.String("reason", why))
	}
}

// Unlock releases the lock if this owner still holds it, and stops its
// keepalive. It runs under a ctx of its own, bounded by commandTimeout
// and detached from ctx's cancellation, so a lock is released even when
// the caller's ctx has already ended. It returns ErrLockLost when the lock
// had already been lost or taken by another owner; calling it again
// returns the first call's result.
func (l *Lock) Unlock(ctx context.Context) (err error) {
	defer l.c.handle(ctx, &err)
	l.mu.Lock()
	if l.unlocked {
		err := l.unlockErr
		l.mu.Unlock()
		return err
	}
	l.unlocked = true
	l.mu.Unlock()

	close(l.stop)
	l.wg.Wait()
	lost := !l.end(ErrLockReleased)
	err = l.release(context.WithoutCancel(ctx))
	if err == nil && lost {
		err = ErrLockLost
	}
	l.c.mu.Lock()
	delete(l.c.locks, l)
	l.c.mu.Unlock()
	l.mu.Lock()
	l.unlockErr = err
	l.mu.Unlock()
	return err
}

func (l *Lock) release(ctx context.Context) error {
	s, lv, err := l.c.acquire()
	if err != nil {
		return wrap(cmdLockRelease, l.key, err)
	}
	res := l.c.script(ctx, s, lv, cmdLockRelease, s.scripts.lockRelease, []string{l.full}, l.owner)
	if err := res.Error(); err != nil {
		return wrap(cmdLockRelease, l.key, err)
	}
	if n, _ := res.AsInt64(); n != 1 {
		return ErrLockLost
	}
	return nil
}

// neverSent reports an error that proves the command did not reach Redis:
// the connection could not be made, the client is closing, or the server
// rejected the command.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	_, redisErr := rueidis.IsRedisErr(err)
	return redisErr || errors.Is(err, rueidis.ErrClosing)
}

// releaseInBackground deletes a lock we may hold after a failed acquire,
// bounded by commandTimeout; Close waits for it.
func (c *Client) releaseInBackground(s *session, l *live, full, owner string) {
	c.mu.Lock()
	c.background.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.background.Done()
		_ = c.script(context.Background(), s, l, cmdLockRelease, s.scripts.lockRelease, []string{full}, owner)
	}()
}

// script runs one of the module's Lua scripts (EVALSHA, falling back to
// EVAL once per server), bounded, timed and counted like any call.
func (c *Client) script(ctx context.Context, s *session, l *live, cmd command, lua *rueidis.Lua, keys []string, args ...string) rueidis.RedisResult {
	start := time.Now()
	ctx, span := c.startSpan(ctx, cmd)
	callCtx, cancel := c.bound(ctx, l.timeout, start)
	res := lua.Exec(callCtx, s.rc, keys, args)
	cancel()
	c.observe(ctx, cmd, start, res.Error(), span)
	return res
}

// scripts are the module's Lua scripts, one set per connection (each
// remembers its sha1).
type scripts struct {
	lockAcquire, lockExtend, lockRelease *rueidis.Lua
	asideFill, asideRelease              *rueidis.Lua
}

func newScripts() scripts {
	return scripts{
		lockAcquire:  rueidis.NewLuaScript(lockAcquireLua),
		lockExtend:   rueidis.NewLuaScript(lockExtendLua),
		lockRelease:  rueidis.NewLuaScript(lockReleaseLua),
		asideFill:    rueidis.NewLuaScript(asideFillLua),
		asideRelease: rueidis.NewLuaScript(asideReleaseLua),
	}
}
