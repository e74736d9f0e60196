package cache

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/gochat/im-infra/lifecycle"
)

// NoTTL is what TTL returns for a key that exists without an expiry.
const NoTTL time.Duration = -1

// Z is a sorted-set member with its score.
type Z struct {
	Score  float64
	Member string
}

type builder = func(b rueidis.Builder, full string) rueidis.Completed

// resultError reports a reply of an unexpected shape (a bug, not a fault).
func resultError(c command, key string, err error) error {
	return lifecycle.InternalError(ModuleName, commandNames[c], "unexpected reply from Redis for key "+strconv.Quote(key), err)
}

func (c *Client) str(ctx context.Context, cmd command, key string, build builder) (string, error) {
	res, err := c.one(ctx, cmd, key, build)
	if err != nil {
		return "", err
	}
	v, err := res.ToString()
	if err != nil {
		return "", resultError(cmd, key, err)
	}
	return v, nil
}

func (c *Client) integer(ctx context.Context, cmd command, key string, build builder) (int64, error) {
	res, err := c.one(ctx, cmd, key, build)
	if err != nil {
		return 0, err
	}
	v, err := res.AsInt64()
	if err != nil {
		return 0, resultError(cmd, key, err)
	}
	return v, nil
}

func (c *Client) float(ctx context.Context, cmd command, key string, build builder) (float64, error) {
	res, err := c.one(ctx, cmd, key, build)
	if err != nil {
		return 0, err
	}
	v, err := res.AsFloat64()
	if err != nil {
		return 0, resultError(cmd, key, err)
	}
	return v, nil
}

func (c *Client) strs(ctx context.Context, cmd command, key string, build builder) ([]string, error) {
	res, err := c.one(ctx, cmd, key, build)
	if err != nil {
		return nil, err
	}
	v, err := res.AsStrSlice()
	if err != nil {
		return nil, resultError(cmd, key, err)
	}
	return v, nil
}

func (c *Client) boolean(ctx context.Context, cmd command, key string, build builder) (bool, error) {
	res, err := c.one(ctx, cmd, key, build)
	if err != nil {
		return false, err
	}
	v, err := res.AsBool()
	if err != nil {
		return false, resultError(cmd, key, err)
	}
	return v, nil
}

// encodeAll encodes values for a command on key.
func encodeAll(cmd command, key string, values []any) ([]string, error) {
	out := make([]string, len(values))
	for i, v := range values {
		s, err := Encode(v)
		if err != nil {
			return nil, encodeError(cmd, key, err)
		}
		out[i] = s
	}
	return out, nil
}

// millis converts an expiration to whole milliseconds, rounding a positive
// sub-millisecond value up so it never means "no expiry".
func millis(d time.Duration) int64 {
	ms := d.Milliseconds()
	if ms == 0 && d > 0 {
		ms = 1
	}
	return ms
}

func negativeTTL(cmd command, key string, d time.Duration) error {
	return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: commandNames[cmd], Field: key,
		Message: "expiration must not be negative, got " + d.String()}
}

// Get returns the value of key, or ErrMiss.
func (c *Client) Get(ctx context.Context, key string) (_ string, err error) {
	defer c.handle(ctx, &err)
	return c.get(ctx, key)
}

func (c *Client) get(ctx context.Context, key string) (string, error) {
	v, err := c.str(ctx, cmdGet, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Get().Key(k).Build() })
	if err == nil && isPlaceholder(v) {
		return "", ErrMiss
	}
	return v, err
}

// Set stores value (through Encode) at key, expiring after expiration
// (0: never).
func (c *Client) Set(ctx context.Context, key string, value any, expiration time.Duration) (err error) {
	defer c.handle(ctx, &err)
	if expiration < 0 {
		return negativeTTL(cmdSet, key, expiration)
	}
	v, err := Encode(value)
	if err != nil {
		return encodeError(cmdSet, key, err)
	}
	_, err = c.one(ctx, cmdSet, key, func(b rueidis.Builder, k string) rueidis.Completed {
		if expiration > 0 {
			return b.Set().Key(k).Value(v).PxMilliseconds(millis(expiration)).Build()
		}
		return b.Set().Key(k).Value(v).Build()
	})
	return err
}

// SetNX stores value only if key does not exist and reports whether it did.
func (c *Client) SetNX(ctx context.Context, key string, value any, expiration time.Duration) (_ bool, err error) {
	defer c.handle(ctx, &err)
	if expiration < 0 {
		return false, negativeTTL(cmdSetNX, key, expiration)
	}
	v, err := Encode(value)
	if err != nil {
		return false, encodeError(cmdSetNX, key, err)
	}
	_, err = c.one(ctx, cmdSetNX, key, func(b rueidis.Builder, k string) rueidis.Completed {
		if expiration > 0 {
			return b.Set().Key(k).Value(v).Nx().PxMilliseconds(millis(expiration)).Build()
		}
		return b.Set().Key(k).Value(v).Nx().Build()
	})
	switch {
	case err == nil:
		return true, nil
	case err == ErrMiss: // SET NX answers nil when the key exists
		return false, nil
	}
	return false, err
}

// GetDel returns the value of key and deletes it (Redis 6.2+), or ErrMiss.
func (c *Client) GetDel(ctx context.Context, key string) (_ string, err error) {
	defer c.handle(ctx, &err)
	v, err := c.str(ctx, cmdGetDel, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Getdel().Key(k).Build() })
	if err == nil && isPlaceholder(v) {
		return "", ErrMiss
	}
	return v, err
}

// multi prepares a multi-key command: full keys, and in cluster mode a
// check that they share a hash slot.
func (c *Client) multi(cmd command, keys []string) (*session, *live, []string, error) {
	first := ""
	if len(keys) > 0 {
		first = keys[0]
	}
	s, l, err := c.acquire()
	if err != nil {
		return nil, nil, nil, wrap(cmd, first, err)
	}
	full := l.fullKeys(keys)
	if err := s.sameSlot(cmd, full, keys); err != nil {
		return nil, nil, nil, err
	}
	return s, l, full, nil
}

// Del deletes keys; missing keys are ignored. In a cluster the keys must
// share a hash slot; Invalidate deletes keys from any slots.
func (c *Client) Del(ctx context.Context, keys ...string) (err error) {
	defer c.handle(ctx, &err)
	if len(keys) == 0 {
		return nil
	}
	s, l, full, err := c.multi(cmdDel, keys)
	if err != nil {
		return err
	}
	return wrap(cmdDel, keys[0], c.do(ctx, s, l, cmdDel, s.rc.B().Del().Key(full...).Build()).Error())
}

// MGet returns the values of keys that exist, by key; missing keys are
// absent from the map. In a cluster the keys must share a hash slot.
func (c *Client) MGet(ctx context.Context, keys ...string) (_ map[string]string, err error) {
	defer c.handle(ctx, &err)
	out := make(map[string]string, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	s, l, full, err := c.multi(cmdMGet, keys)
	if err != nil {
		return nil, err
	}
	res := c.do(ctx, s, l, cmdMGet, s.rc.B().Mget().Key(full...).Build())
	if err := res.Error(); err != nil {
		return nil, wrap(cmdMGet, keys[0], err)
	}
	vals, err := res.ToArray()
	if err != nil || len(vals) != len(keys) {
		return nil, resultError(cmdMGet, keys[0], err)
	}
	for i, v := range vals {
		if str, err := v.ToString(); err == nil && !isPlaceholder(str) {
			out[keys[i]] = str
		}
	}
	return out, nil
}

// MSet stores every value atomically. In a cluster the keys must share a
// hash slot.
func (c *Client) MSet(ctx context.Context, values map[string]any) (err error) {
	defer c.handle(ctx, &err)
	if len(values) == 0 {
		return nil
	}
	keys := make([]string, 0, len(values))
	enc := make([]string, 0, len(values))
	for k, v := range values {
		s, err := Encode(v)
		if err != nil {
			return encodeError(cmdMSet, k, err)
		}
		keys = append(keys, k)
		enc = append(enc, s)
	}
	s, l, full, err := c.multi(cmdMSet, keys)
	if err != nil {
		return err
	}
	kv := s.rc.B().Mset().KeyValue()
	for i := range full {
		kv = kv.KeyValue(full[i], enc[i])
	}
	return wrap(cmdMSet, keys[0], c.do(ctx, s, l, cmdMSet, kv.Build()).Error())
}

// Incr adds 1 to the integer at key (a missing key counts as 0).
func (c *Client) Incr(ctx context.Context, key string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.integer(ctx, cmdIncr, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Incr().Key(k).Build() })
}

// IncrBy adds n to the integer at key.
func (c *Client) IncrBy(ctx context.Context, key string, n int64) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.integer(ctx, cmdIncrBy, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Incrby().Key(k).Increment(n).Build() })
}

// Decr subtracts 1 from the integer at key.
func (c *Client) Decr(ctx context.Context, key string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.integer(ctx, cmdDecr, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Decr().Key(k).Build() })
}

// Expire sets key to expire after ttl and reports whether the key exists.
func (c *Client) Expire(ctx context.Context, key string, ttl time.Duration) (_ bool, err error) {
	defer c.handle(ctx, &err)
	if ttl < 0 {
		return false, negativeTTL(cmdExpire, key, ttl)
	}
	return c.boolean(ctx, cmdExpire, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Pexpire().Key(k).Milliseconds(millis(ttl)).Build()
	})
}

// TTL returns how long key has left, NoTTL for a key without expiry, or
// ErrMiss.
func (c *Client) TTL(ctx context.Context, key string) (_ time.Duration, err error) {
	defer c.handle(ctx, &err)
	ms, err := c.integer(ctx, cmdTTL, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Pttl().Key(k).Build() })
	switch {
	case err != nil:
		return 0, err
	case ms == -2:
		return 0, ErrMiss
	case ms == -1:
		return NoTTL, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Exists counts how many of keys exist. In a cluster the keys must share a
// hash slot.
func (c *Client) Exists(ctx context.Context, keys ...string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	if len(keys) == 0 {
		return 0, nil
	}
	s, l, full, err := c.multi(cmdExists, keys)
	if err != nil {
		return 0, err
	}
	res := c.do(ctx, s, l, cmdExists, s.rc.B().Exists().Key(full...).Build())
	n, err := res.AsInt64()
	if err := res.Error(); err != nil {
		return 0, wrap(cmdExists, keys[0], err)
	}
	if err != nil {
		return 0, resultError(cmdExists, keys[0], err)
	}
	return n, nil
}

// HGet returns one field of the hash at key, or ErrMiss.
func (c *Client) HGet(ctx context.Context, key, field string) (_ string, err error) {
	defer c.handle(ctx, &err)
	return c.str(ctx, cmdHGet, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Hget().Key(k).Field(field).Build() })
}

// HSet sets one field of the hash at key.
func (c *Client) HSet(ctx context.Context, key, field string, value any) (err error) {
	defer c.handle(ctx, &err)
	v, err := Encode(value)
	if err != nil {
		return encodeError(cmdHSet, key, err)
	}
	_, err = c.one(ctx, cmdHSet, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Hset().Key(k).FieldValue().FieldValue(field, v).Build()
	})
	return err
}

// HGetAll returns every field of the hash at key (empty for a missing key).
func (c *Client) HGetAll(ctx context.Context, key string) (_ map[string]string, err error) {
	defer c.handle(ctx, &err)
	res, err := c.one(ctx, cmdHGetAll, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Hgetall().Key(k).Build() })
	if err != nil {
		return nil, err
	}
	m, err := res.AsStrMap()
	if err != nil {
		return nil, resultError(cmdHGetAll, key, err)
	}
	return m, nil
}

// HDel deletes fields of the hash at key and returns how many existed.
func (c *Client) HDel(ctx context.Context, key string, fields ...string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	if len(fields) == 0 {
		return 0, nil
	}
	return c.integer(ctx, cmdHDel, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Hdel().Key(k).Field(fields...).Build() })
}

// HIncrBy adds n to an integer field of the hash at key.
func (c *Client) HIncrBy(ctx context.Context, key, field string, n int64) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.integer(ctx, cmdHIncrBy, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Hincrby().Key(k).Field(field).Increment(n).Build()
	})
}

// HMGet returns the fields that exist, by field name.
func (c *Client) HMGet(ctx context.Context, key string, fields ...string) (_ map[string]string, err error) {
	defer c.handle(ctx, &err)
	out := make(map[string]string, len(fields))
	if len(fields) == 0 {
		return out, nil
	}
	res, err := c.one(ctx, cmdHMGet, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Hmget().Key(k).Field(fields...).Build() })
	if err != nil {
		return nil, err
	}
	vals, err := res.ToArray()
	if err != nil || len(vals) != len(fields) {
		return nil, resultError(cmdHMGet, key, err)
	}
	for i, v := range vals {
		if s, err := v.ToString(); err == nil {
			out[fields[i]] = s
		}
	}
	return out, nil
}

// SAdd adds members (through Encode) to the set at key.
func (c *Client) SAdd(ctx context.Context, key string, members ...any) (err error) {
	defer c.handle(ctx, &err)
	if len(members) == 0 {
		return nil
	}
	m, err := encodeAll(cmdSAdd, key, members)
	if err != nil {
		return err
	}
	_, err = c.one(ctx, cmdSAdd, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Sadd().Key(k).Member(m...).Build() })
	return err
}

// SMembers returns the members of the set at key (empty for a missing key).
func (c *Client) SMembers(ctx context.Context, key string) (_ []string, err error) {
	defer c.handle(ctx, &err)
	return c.strs(ctx, cmdSMembers, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Smembers().Key(k).Build() })
}

// SIsMember reports whether member is in the set at key.
func (c *Client) SIsMember(ctx context.Context, key string, member any) (_ bool, err error) {
	defer c.handle(ctx, &err)
	m, err := Encode(member)
	if err != nil {
		return false, encodeError(cmdSIsMember, key, err)
	}
	return c.boolean(ctx, cmdSIsMember, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Sismember().Key(k).Member(m).Build() })
}

// SRem removes members and returns how many were there.
func (c *Client) SRem(ctx context.Context, key string, members ...any) (_ int64, err error) {
	defer c.handle(ctx, &err)
	if len(members) == 0 {
		return 0, nil
	}
	m, err := encodeAll(cmdSRem, key, members)
	if err != nil {
		return 0, err
	}
	return c.integer(ctx, cmdSRem, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Srem().Key(k).Member(m...).Build() })
}

// SCard returns the size of the set at key.
func (c *Client) SCard(ctx context.Context, key string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.integer(ctx, cmdSCard, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Scard().Key(k).Build() })
}

// ZAdd adds or updates members of the sorted set at key and returns how
// many were new.
func (c *Client) ZAdd(ctx context.Context, key string, members ...Z) (_ int64, err error) {
	defer c.handle(ctx, &err)
	if len(members) == 0 {
		return 0, nil
	}
	return c.integer(ctx, cmdZAdd, key, func(b rueidis.Builder, k string) rueidis.Completed {
		sm := b.Zadd().Key(k).ScoreMember()
		for _, m := range members {
			sm = sm.ScoreMember(m.Score, m.Member)
		}
		return sm.Build()
	})
}

// ZRange returns members by rank, lowest score first (stop -1: the last).
func (c *Client) ZRange(ctx context.Context, key string, start, stop int64) (_ []string, err error) {
	defer c.handle(ctx, &err)
	return c.strs(ctx, cmdZRange, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Zrange().Key(k).Min(strconv.FormatInt(start, 10)).Max(strconv.FormatInt(stop, 10)).Build()
	})
}

// ZRevRange returns members by rank, highest score first.
func (c *Client) ZRevRange(ctx context.Context, key string, start, stop int64) (_ []string, err error) {
	defer c.handle(ctx, &err)
	return c.strs(ctx, cmdZRevRange, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Zrevrange().Key(k).Start(start).Stop(stop).Build()
	})
}

// ZRangeByScore returns members with min <= score <= max, lowest first.
// min and max take Redis syntax: "1.5", "(1.5" (exclusive), "-inf", "+inf".
func (c *Client) ZRangeByScore(ctx context.Context, key, min, max string) (_ []string, err error) {
	defer c.handle(ctx, &err)
	return c.strs(ctx, cmdZRangeByScore, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Zrangebyscore().Key(k).Min(min).Max(max).Build()
	})
}

// ZRem removes members and returns how many were there.
func (c *Client) ZRem(ctx context.Context, key string, members ...string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	if len(members) == 0 {
		return 0, nil
	}
	return c.integer(ctx, cmdZRem, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Zrem().Key(k).Member(members...).Build() })
}

// ZCard returns the size of the sorted set at key.
func (c *Client) ZCard(ctx context.Context, key string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.integer(ctx, cmdZCard, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Zcard().Key(k).Build() })
}

// ZScore returns the score of member, or ErrMiss.
func (c *Client) ZScore(ctx context.Context, key, member string) (_ float64, err error) {
	defer c.handle(ctx, &err)
	return c.float(ctx, cmdZScore, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Zscore().Key(k).Member(member).Build() })
}

// ZIncrBy adds incr to the score of member and returns the new score.
func (c *Client) ZIncrBy(ctx context.Context, key string, incr float64, member string) (_ float64, err error) {
	defer c.handle(ctx, &err)
	return c.float(ctx, cmdZIncrBy, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Zincrby().Key(k).Increment(incr).Member(member).Build()
	})
}

// LPush prepends values and returns the list's new length.
func (c *Client) LPush(ctx context.Context, key string, values ...any) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.push(ctx, cmdLPush, key, values)
}

// RPush appends values and returns the list's new length.
func (c *Client) RPush(ctx context.Context, key string, values ...any) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.push(ctx, cmdRPush, key, values)
}

func (c *Client) push(ctx context.Context, cmd command, key string, values []any) (int64, error) {
	if len(values) == 0 {
		return c.integer(ctx, cmdLLen, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Llen().Key(k).Build() })
	}
	v, err := encodeAll(cmd, key, values)
	if err != nil {
		return 0, err
	}
	return c.integer(ctx, cmd, key, func(b rueidis.Builder, k string) rueidis.Completed {
		if cmd == cmdLPush {
			return b.Lpush().Key(k).Element(v...).Build()
		}
		return b.Rpush().Key(k).Element(v...).Build()
	})
}

// LRange returns elements start..stop (inclusive; -1 is the last).
func (c *Client) LRange(ctx context.Context, key string, start, stop int64) (_ []string, err error) {
	defer c.handle(ctx, &err)
	return c.strs(ctx, cmdLRange, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Lrange().Key(k).Start(start).Stop(stop).Build()
	})
}

// LTrim keeps only elements start..stop.
func (c *Client) LTrim(ctx context.Context, key string, start, stop int64) (err error) {
	defer c.handle(ctx, &err)
	_, err = c.one(ctx, cmdLTrim, key, func(b rueidis.Builder, k string) rueidis.Completed {
		return b.Ltrim().Key(k).Start(start).Stop(stop).Build()
	})
	return err
}

// LLen returns the length of the list at key.
func (c *Client) LLen(ctx context.Context, key string) (_ int64, err error) {
	defer c.handle(ctx, &err)
	return c.integer(ctx, cmdLLen, key, func(b rueidis.Builder, k string) rueidis.Completed { return b.Llen().Key(k).Build() })
}
