package cache

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// meterName is the instrumentation scope of every instrument here.
const meterName = "github.com/gochat/im-infra/modules/cache"

// command names one kind of call for metrics, spans and errors. The set is
// fixed, so the "command" attribute has low cardinality by construction.
type command uint8

const (
	cmdGet command = iota
	cmdSet
	cmdSetNX
	cmdGetDel
	cmdDel
	cmdMGet
	cmdMSet
	cmdIncr
	cmdIncrBy
	cmdDecr
	cmdExpire
	cmdTTL
	cmdExists
	cmdHGet
	cmdHSet
	cmdHGetAll
	cmdHDel
	cmdHIncrBy
	cmdHMGet
	cmdSAdd
	cmdSMembers
	cmdSIsMember
	cmdSRem
	cmdSCard
	cmdZAdd
	cmdZRange
	cmdZRevRange
	cmdZRangeByScore
	cmdZRem
	cmdZCard
	cmdZScore
	cmdZIncrBy
	cmdLPush
	cmdRPush
	cmdLRange
	cmdLTrim
	cmdLLen
	cmdEval
	cmdEvalSha
	cmdScriptLoad
	cmdPipeline
	cmdPing
	cmdLockAcquire
	cmdLockExtend
	cmdLockRelease
	cmdAsideClaim
	cmdAsideFill
	cmdAsideRelease
	numCommands
)

// commandNames are the values of the "command" attribute and the Op of
// errors: the Redis command in lower case, or what the module's own
// scripts do.
var commandNames = [numCommands]string{
	cmdGet: "get", cmdSet: "set", cmdSetNX: "setnx", cmdGetDel: "getdel", cmdDel: "del",
	cmdMGet: "mget", cmdMSet: "mset", cmdIncr: "incr", cmdIncrBy: "incrby", cmdDecr: "decr",
	cmdExpire: "expire", cmdTTL: "ttl", cmdExists: "exists",
	cmdHGet: "hget", cmdHSet: "hset", cmdHGetAll: "hgetall", cmdHDel: "hdel", cmdHIncrBy: "hincrby", cmdHMGet: "hmget",
	cmdSAdd: "sadd", cmdSMembers: "smembers", cmdSIsMember: "sismember", cmdSRem: "srem", cmdSCard: "scard",
	cmdZAdd: "zadd", cmdZRange: "zrange", cmdZRevRange: "zrevrange", cmdZRangeByScore: "zrangebyscore",
	cmdZRem: "zrem", cmdZCard: "zcard", cmdZScore: "zscore", cmdZIncrBy: "zincrby",
	cmdLPush: "lpush", cmdRPush: "rpush", cmdLRange: "lrange", cmdLTrim: "ltrim", cmdLLen: "llen",
	cmdEval: "eval", cmdEvalSha: "evalsha", cmdScriptLoad: "script_load", cmdPipeline: "pipeline",
	cmdPing:        "ping",
	cmdLockAcquire: "lock_acquire", cmdLockExtend: "lock_extend", cmdLockRelease: "lock_release",
	cmdAsideClaim: "aside_claim", cmdAsideFill: "aside_fill", cmdAsideRelease: "aside_release",
}

func (c command) String() string { return commandNames[c] }

// status is the outcome of a call, the "status" attribute.
type status uint8

const (
	statusOK status = iota
	statusMiss
	statusTimeout
	statusConnection
	statusError
	numStatuses
)

var statusNames = [numStatuses]string{"ok", "miss", "timeout", "connection", "error"}

// Bucket bounds of the latency histogram, in seconds: a Redis round trip
// on a LAN is 0.1-1 ms; the tail reaches the command timeout.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// metrics holds the instruments and, for every (command, status), the
// attribute options precomputed so that recording allocates nothing.
type metrics struct {
	commands  metric.Int64Counter
	duration  metric.Float64Histogram
	ccHits    metric.Int64Counter
	ccMisses  metric.Int64Counter
	loads     metric.Int64Counter
	locksLost metric.Int64Counter

	add    [numCommands][numStatuses][]metric.AddOption
	record [numCommands][numStatuses][]metric.RecordOption
	loadOK []metric.AddOption
	loadKO []metric.AddOption
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(meterName)
	var (
		x   metrics
		err error
	)
	if x.commands, err = m.Int64Counter("cache.commands",
		metric.WithUnit("{command}"),
		metric.WithDescription("Calls sent to Redis, by command and status (ok, miss, timeout, connection, error).")); err != nil {
		return nil, err
	}
	if x.duration, err = m.Float64Histogram("cache.command.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Latency of calls sent to Redis, by command and status."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if x.ccHits, err = m.Int64Counter("cache.client_cache.hits",
		metric.WithUnit("{read}"),
		metric.WithDescription("Cached reads answered from the client-side cache without a round trip.")); err != nil {
		return nil, err
	}
	if x.ccMisses, err = m.Int64Counter("cache.client_cache.misses",
		metric.WithUnit("{read}"),
		metric.WithDescription("Cached reads that went to Redis (and are cached for the next read).")); err != nil {
		return nil, err
	}
	if x.loads, err = m.Int64Counter("cache.aside.loads",
		metric.WithUnit("{load}"),
		metric.WithDescription("GetOrLoad loader calls, by status (ok, error).")); err != nil {
		return nil, err
	}
	if x.locksLost, err = m.Int64Counter("cache.locks.lost",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Held locks whose ownership was lost before Unlock.")); err != nil {
		return nil, err
	}
	for c := range numCommands {
		for s := range numStatuses {
			set := metric.WithAttributeSet(attribute.NewSet(
				attribute.String("command", commandNames[c]),
				attribute.String("status", statusNames[s]),
			))
			x.add[c][s] = []metric.AddOption{set}
			x.record[c][s] = []metric.RecordOption{set}
		}
	}
	x.loadOK = []metric.AddOption{metric.WithAttributes(attribute.String("status", "ok"))}
	x.loadKO = []metric.AddOption{metric.WithAttributes(attribute.String("status", "error"))}
	return &x, nil
}

func (m *metrics) observe(ctx context.Context, c command, s status, elapsed time.Duration) {
	m.commands.Add(ctx, 1, m.add[c][s]...)
	m.duration.Record(ctx, elapsed.Seconds(), m.record[c][s]...)
}
