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

// A job runs on one instance at a time, and its writes are fenced: if the
// holder stalls past its lease and another instance takes over, the stale
// holder's write is refused by etcd instead of overwriting the new one's.
func ExampleLocker() {
	srv, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	defer cli.Close()
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
