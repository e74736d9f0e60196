package locking_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/coord/locking"
)

// exampleEtcd starts an embedded etcd and a client on it for an example.
func exampleEtcd() (*clientv3.Client, func()) {
	srv, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		panic(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	return cli, func() { _ = cli.Close(); srv.Close() }
}

// A job runs on one instance at a time, and its writes are fenced: if the
// holder stalls past its lease and another instance takes over, the stale
// holder's write is refused by etcd instead of overwriting the new one's.
func ExampleLocker() {
	cli, stop := exampleEtcd()
	defer stop()
	ctx := context.Background()

	locker, err := locking.NewLocker(cli, locking.Config{}.Defaults())
	if err != nil {
		panic(err)
	}
	lock, err := locker.Acquire(ctx, "daily-report", 10*time.Second)
	if err != nil {
		panic(err)
	}
	_, err = locker.TryAcquire(ctx, "daily-report", 10*time.Second)
	fmt.Println("second holder refused:", errors.Is(err, locking.ErrLockHeld))

	// The fenced write commits only while this holder still owns the lock.
	if _, err := lock.Guard(ctx, clientv3.OpPut("/example/report/status", "done")); err != nil {
		panic(err)
	}
	fmt.Println("fenced write done")
	if err := lock.Unlock(ctx); err != nil {
		panic(err)
	}
	<-lock.Done()
	_, err = lock.Guard(ctx, clientv3.OpPut("/example/report/status", "late"))
	fmt.Println("write after unlock refused:", errors.Is(err, locking.ErrLockLost))
	// Output:
	// second holder refused: true
	// fenced write done
	// write after unlock refused: true
}

// One instance at a time runs the scheduler: every instance campaigns, the
// first to stand leads, and the next one takes over as soon as the leader
// resigns (or loses its lease). Leader-only writes are fenced with Guard.
func ExampleElection() {
	cli, stop := exampleEtcd()
	defer stop()
	ctx := context.Background()
	cfg := locking.Config{}.Defaults()

	a, err := locking.NewElection(cli, "scheduler", cfg)
	if err != nil {
		panic(err)
	}
	defer a.Close(ctx)
	b, err := locking.NewElection(cli, "scheduler", cfg)
	if err != nil {
		panic(err)
	}
	defer b.Close(ctx)

	if err := a.Campaign(ctx, "instance-a"); err != nil {
		panic(err)
	}
	leader, _ := b.Leader(ctx)
	fmt.Println("leader:", leader)

	won := make(chan error, 1)
	go func() { won <- b.Campaign(ctx, "instance-b") }()
	if _, err := a.Guard(ctx, clientv3.OpPut("/example/scheduler/owner", "instance-a")); err != nil {
		panic(err)
	}
	if err := a.Resign(ctx); err != nil {
		panic(err)
	}
	if err := <-won; err != nil {
		panic(err)
	}
	leader, _ = a.Leader(ctx)
	fmt.Println("leader after resign:", leader)
	_, err = a.Guard(ctx, clientv3.OpPut("/example/scheduler/owner", "instance-a"))
	fmt.Println("old leader's write refused:", errors.Is(err, locking.ErrNotLeader))
	// Output:
	// leader: instance-a
	// leader after resign: instance-b
	// old leader's write refused: true
}

// Each instance of a service takes the smallest free ID as its snowflake
// worker ID, holds it for as long as it runs, and stops minting IDs if it
// loses it (Done).
func ExampleIDAllocator() {
	cli, stop := exampleEtcd()
	defer stop()
	ctx := context.Background()
	cfg := locking.Config{}.Defaults()
	cfg.IDs.Max = 2

	first, err := locking.NewIDAllocator(cli, "im-logic", cfg, locking.WithHolder("im-logic-0"))
	if err != nil {
		panic(err)
	}
	second, err := locking.NewIDAllocator(cli, "im-logic", cfg, locking.WithHolder("im-logic-1"))
	if err != nil {
		panic(err)
	}
	a, err := first.AcquireID(ctx)
	if err != nil {
		panic(err)
	}
	b, err := second.AcquireID(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(a.Key(), b.Key())
	_, err = second.AcquireID(ctx)
	fmt.Println("all taken:", errors.Is(err, locking.ErrIDsExhausted))

	select {
	case <-a.Done():
		fmt.Println("lost: stop minting IDs")
	default:
		fmt.Println("worker", a.ID(), "minting")
	}
	if err := a.Release(ctx); err != nil {
		panic(err)
	}
	c, err := second.AcquireID(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("released ID reused:", c.ID())
	_ = second.Close(ctx)
	// Output:
	// /ids/im-logic/1 /ids/im-logic/2
	// all taken: true
	// worker 1 minting
	// released ID reused: 1
}
