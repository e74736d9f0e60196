package fxinfratest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/redis/rueidis"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/cache"
)

// WithRedis gives the app a Redis for the cache module: the real one
// (IMINFRA_TEST_REDIS, or 127.0.0.1:6379 when that variable is unset and
// the port answers), else a devstack Redis of the test's own (redis-server
// from PATH, else miniredis). With IMINFRA_TEST_REQUIRE_REAL=1 an
// unreachable real Redis fails the test instead.
//
// It seeds the service-layer "cache" document with the address and a key
// prefix of the test's own, and deletes the keys under that prefix when
// the test ends, so tests can share one Redis (which is never flushed).
// The app still needs cache.Module in its graph and something that asks
// for cache.Cache. Put more cache settings in the global layer
// (app.PutGlobal), which merges under this document, or keep "addresses"
// and "keyPrefix" when replacing it with app.Put.
func WithRedis() Option {
	return func(s *Setup) {
		t := s.T()
		t.Helper()
		addr, err := devstack.TestRedisAddr()
		if err != nil {
			if devstack.RequireReal() {
				t.Fatalf("fxinfratest: %v and %s=1", err, devstack.EnvRequireReal)
			}
			r, err := devstack.StartRedis(devstack.RedisOptions{})
			if err != nil {
				t.Fatalf("fxinfratest: start redis: %v", err)
			}
			s.Cleanup(r.Close)
			addr = r.Addr()
		}
		var b [6]byte
		_, _ = rand.Read(b[:])
		prefix := "fxinfratest:" + hex.EncodeToString(b[:]) + ":"
		doc, _ := json.Marshal(map[string]any{"addresses": []string{addr}, "keyPrefix": prefix})
		s.Config(cache.ModuleName, string(doc))
		s.Cleanup(func() { deleteRedisKeys(addr, prefix) })
	}
}

// deleteRedisKeys removes the keys under prefix; the app has stopped by
// then. Errors are ignored: a server of the test's own is gone anyway.
func deleteRedisKeys(addr, prefix string) {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		return
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := rc.Do(ctx, rc.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return
		}
		if len(e.Elements) > 0 {
			_ = rc.Do(ctx, rc.B().Del().Key(e.Elements...).Build()).Error()
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}
