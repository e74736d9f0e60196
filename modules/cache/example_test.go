package cache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/cache"
)

// connect starts a throwaway Redis (redis-server from PATH, else
// miniredis) and connects to it, as a service connects to its own.
func connect() (*cache.Client, func()) {
	srv, err := devstack.StartRedis(devstack.RedisOptions{})
	if err != nil {
		panic(err)
	}
	cfg := cache.Config{}.Defaults()
	cfg.Addresses = []string{srv.Addr()}
	cfg.KeyPrefix = "im-logic:"
	c, err := cache.New(context.Background(), cfg)
	if err != nil {
		srv.Close()
		panic(err)
	}
	return c, func() { _ = c.Close(); srv.Close() }
}

func Example() {
	c, done := connect()
	defer done()
	ctx := context.Background()

	if err := c.Set(ctx, "session:42", "alice", 30*time.Minute); err != nil {
		fmt.Println(err)
		return
	}
	v, err := c.Get(ctx, "session:42")
	fmt.Println(v, err)

	_, err = c.Get(ctx, "session:43")
	fmt.Println(errors.Is(err, cache.ErrMiss))
	// Output:
	// alice <nil>
	// true
}

type profile struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

func ExampleClient_GetOrLoad() {
	c, done := connect()
	defer done()
	ctx := context.Background()

	loads := 0
	fromDB := func(ctx context.Context) (any, error) {
		loads++
		return profile{ID: 7, Name: "bob"}, nil
	}
	for range 3 {
		raw, err := c.GetOrLoad(ctx, "profile:7", time.Hour, fromDB)
		if err != nil {
			fmt.Println(err)
			return
		}
		var p profile
		if err := cache.Decode(raw, &p); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(p.Name)
	}
	fmt.Println("loads:", loads)

	// A writer changes the database, then invalidates: the next read loads.
	_ = c.Invalidate(ctx, "profile:7")
	_, _ = c.GetOrLoad(ctx, "profile:7", time.Hour, fromDB)
	fmt.Println("loads:", loads)
	// Output:
	// bob
	// bob
	// bob
	// loads: 1
	// loads: 2
}

func ExampleClient_Lock() {
	c, done := connect()
	defer done()
	ctx := context.Background()

	lock, err := c.Lock(ctx, "order:1001", 10*time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Hand the fencing token to the resource the lock protects, and stop
	// if ownership is lost.
	fmt.Println("token:", lock.Token())
	select {
	case <-lock.Done():
		fmt.Println("lost:", lock.Err())
	default:
		fmt.Println("held")
	}
	_, err = c.TryLock(ctx, "order:1001", 10*time.Second)
	fmt.Println(errors.Is(err, cache.ErrLockHeld))
	fmt.Println(lock.Unlock(ctx))
	// Output:
	// token: 1
	// held
	// true
	// <nil>
}

func ExampleClient_Pipeline() {
	c, done := connect()
	defer done()
	replies, err := c.Pipeline(context.Background(),
		cache.Cmd{Name: "SET", Keys: []string{"visits"}, Args: []any{10}},
		cache.Cmd{Name: "INCRBY", Keys: []string{"visits"}, Args: []any{5}},
		cache.Cmd{Name: "GET", Keys: []string{"nobody"}},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _ := replies[1].Int64()
	fmt.Println(n, errors.Is(replies[2].Err(), cache.ErrMiss))
	// Output:
	// 15 true
}

func ExampleEncode() {
	for _, v := range []any{"text", 42, 1.5, true, profile{ID: 1, Name: "ann"}} {
		s, _ := cache.Encode(v)
		fmt.Println(s)
	}
	_, err := cache.Encode(make(chan int))
	fmt.Println(err)
	// Output:
	// text
	// 42
	// 1.5
	// 1
	// {"id":1,"name":"ann"}
	// cannot encode a chan int: json: unsupported type: chan int
}

func ExampleDecode() {
	var n int64
	var p profile
	_ = cache.Decode("42", &n)
	_ = cache.Decode(`{"id":1,"name":"ann"}`, &p)
	fmt.Println(n, p.Name)
	// Output:
	// 42 ann
}
