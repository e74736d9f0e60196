// Command imdev runs a service on the embedded dev stack: it starts etcd
// in-process, seeds it with the documents under configs/dev (each
// configs/{env}/{service}/{component}.json becomes the key
// /config/{env}/{service}/{component}), points the service at it and runs
// an example service built on fxinfra.Module until interrupted.
//
//	go run ./cmd/imdev              # what `make run` does
//	go run ./cmd/imdev -configs dir # seed from another directory
//
// While it runs, change a document with any etcd client (the endpoint is
// logged) and watch the service apply it live, e.g. set
// /config/dev/example/clog to {"level":"debug"}.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/modules/clog"
)

func main() {
	configs := flag.String("configs", "configs", "directory of {env}/{service}/{component}.json documents to seed")
	service := flag.String("service", "example", "service name")
	flag.Parse()
	if err := run(*configs, *service); err != nil {
		fmt.Fprintln(os.Stderr, "imdev:", err)
		os.Exit(1)
	}
}

func run(configs, service string) error {
	etcd, err := devstack.StartEtcd(devstack.EtcdOptions{})
	if err != nil {
		return err
	}
	defer etcd.Close()
	n, err := seed(etcd.Endpoints(), configs)
	if err != nil {
		return err
	}
	setDefault("IMINFRA_SERVICE", service)
	setDefault("IMINFRA_ENV", "dev")
	os.Setenv("IMINFRA_ETCD_ENDPOINTS", etcd.Endpoint())
	setDefault(fxinfra.EnvSnapshot, filepath.Join(os.TempDir(), "imdev", service+".snapshot.json"))

	clog.Info("dev stack: embedded etcd running", zap.String("etcd", etcd.Endpoint()),
		zap.Int("documents_seeded", n), zap.String("try", "curl 127.0.0.1:9090/readyz"))
	app := fx.New(fxinfra.Module, exampleModule)
	app.Run()
	return app.Err()
}

// exampleModule is a stand-in service: it logs through a module logger
// every few seconds, so a live level change is visible at once.
var exampleModule = fx.Module("example",
	fx.Invoke(func(lc fx.Lifecycle) {
		log := clog.For("example")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error {
				go func() {
					defer close(done)
					t := time.NewTicker(5 * time.Second)
					defer t.Stop()
					for i := 1; ; i++ {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
							log.Debug("tick", zap.Int("n", i))
						}
					}
				}()
				return nil
			},
			OnStop: func(context.Context) error {
				cancel()
				<-done
				return nil
			},
		})
	}),
)

func setDefault(k, v string) {
	if os.Getenv(k) == "" {
		os.Setenv(k, v)
	}
}

// seed writes every configs/{env}/{service}/{component}.json to etcd.
func seed(endpoints []string, root string) (int, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	n := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		key := "/config/" + filepath.ToSlash(strings.TrimSuffix(rel, ".json"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, key, string(data)); err != nil {
			return fmt.Errorf("seed %s: %w", key, err)
		}
		n++
		return nil
	})
	return n, err
}
