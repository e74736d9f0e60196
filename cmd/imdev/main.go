// Command imdev runs a service on the embedded dev stack, so one command
// runs it on a bare machine (`make run`):
//
//  1. it starts etcd in-process, on 127.0.0.1:2379 when that port is free
//     (else on a free port), unless IMINFRA_ETCD_ENDPOINTS names an etcd to
//     use instead;
//  2. it writes every configs/{env}/{service}/{component}.json that etcd does
//     not hold yet to /config/{env}/{service}/{component};
//  3. it writes the endpoints to .run/devstack.env, for etcdctl or
//     config-cli in a second terminal (`source .run/devstack.env`);
//  4. it runs the example service (fxinfra.Module and the greeter module)
//     until SIGINT or SIGTERM, then stops it in order and exits 0.
//
// It says which settings it sets and which it leaves as they were.
package main

import (
	"context"
	"errors"
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
	"github.com/gochat/im-infra/examples/greeter"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/clog"
	"github.com/gochat/im-infra/modules/coord"
)

// DefaultEtcdAddr is where the dev etcd listens when the port is free:
// etcd's own default, so etcdctl finds it without flags.
const DefaultEtcdAddr = "127.0.0.1:2379"

func main() {
	configs := flag.String("configs", "configs", "directory of {env}/{service}/{component}.json documents to seed")
	service := flag.String("service", "example", "service name, unless IMINFRA_SERVICE is set")
	etcdAddr := flag.String("etcd-addr", DefaultEtcdAddr, "address of the embedded etcd (a free port when taken)")
	runDir := flag.String("run-dir", ".run", "directory for devstack.env, the etcd data and the config snapshot")
	flag.Parse()
	if err := run(*configs, *service, *etcdAddr, *runDir); err != nil {
		clog.Error("imdev: cannot start the dev stack", zap.Error(err))
		os.Exit(1)
	}
}

func run(configs, service, etcdAddr, runDir string) error {
	log := clog.For("imdev")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	endpoint := strings.TrimSpace(os.Getenv(coord.EnvEndpoints))
	if endpoint == "" {
		e, err := startEtcd(filepath.Join(runDir, "etcd"), etcdAddr)
		if err != nil {
			return err
		}
		defer e.Close()
		endpoint = e.Endpoint()
		log.Info("dev stack: embedded etcd running", zap.String("endpoint", endpoint))
	} else {
		log.Info("dev stack: using the etcd that IMINFRA_ETCD_ENDPOINTS names", zap.String("endpoints", endpoint))
	}
	written, kept, err := seed(strings.Split(endpoint, ","), configs)
	if err != nil {
		return err
	}
	log.Info("dev stack: config documents seeded", zap.String("from", configs),
		zap.Int("written", written), zap.Int("already_in_etcd", kept))

	set, left := settings(map[string]string{
		lifecycle.EnvService: service,
		lifecycle.EnvEnv:     "dev",
		coord.EnvEndpoints:   endpoint,
		fxinfra.EnvSnapshot:  filepath.Join(runDir, service+".snapshot.json"),
	})
	log.Info("dev stack: settings", zap.Strings("set_by_imdev", set), zap.Strings("kept_from_environment", left))
	envFile, err := writeEnvFile(runDir, endpoint)
	if err != nil {
		return err
	}
	log.Info("dev stack: for etcdctl or config-cli in another terminal", zap.String("run", "source "+envFile))

	app := fx.New(
		fxinfra.Module,
		greeter.Module,
		fx.Invoke(func(*greeter.Greeter) {}),
		// Appended after the admin server's hook, so it runs once that listens.
		fx.Invoke(func(lc fx.Lifecycle, s *lifecycle.AdminServer, id lifecycle.Identity) {
			lc.Append(fx.StartHook(func() {
				key := fmt.Sprintf("/config/%s/%s/%s", id.Env, id.Service, greeter.ModuleName)
				log.Info("dev stack: service running; Ctrl-C stops it",
					zap.String("readyz", "curl http://"+s.Addr()+"/readyz"),
					zap.String("live_config", fmt.Sprintf(`etcdctl put %s '{"message":"hello from etcd","interval":"1s"}'`, key)))
			}))
		}),
	)
	app.Run() // exits 1 itself if the start fails
	return nil
}

// startEtcd starts the dev etcd with a fresh data directory, on addr when
// it is free.
func startEtcd(dir, addr string) (*devstack.Etcd, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	e, err := devstack.StartEtcd(devstack.EtcdOptions{Dir: dir, ClientAddr: addr})
	if errors.Is(err, devstack.ErrAddrInUse) {
		clog.For("imdev").Info("dev stack: the etcd port is taken; using a free one", zap.String("wanted", addr))
		e, err = devstack.StartEtcd(devstack.EtcdOptions{Dir: dir})
	}
	return e, err
}

// settings sets each variable that is not set yet and reports which it set
// and which it kept.
func settings(want map[string]string) (set, kept []string) {
	for k, v := range want {
		if cur := os.Getenv(k); cur != "" {
			kept = append(kept, k+"="+cur)
			continue
		}
		_ = os.Setenv(k, v)
		set = append(set, k+"="+v)
	}
	return set, kept
}

// writeEnvFile writes the endpoints as shell exports for etcdctl (v3 API)
// and config-cli.
func writeEnvFile(dir, endpoints string) (string, error) {
	path := filepath.Join(dir, "devstack.env")
	body := fmt.Sprintf("# written by imdev (make run) at %s\nexport %s=%s\nexport ETCDCTL_API=3\nexport ETCDCTL_ENDPOINTS=%s\n",
		time.Now().Format(time.RFC3339), coord.EnvEndpoints, endpoints, endpoints)
	return path, os.WriteFile(path, []byte(body), 0o644)
}

// seed writes every {env}/{service}/{component}.json under root to
// /config/{env}/{service}/{component} unless etcd holds that key already,
// so documents changed by hand in a longer-lived etcd are kept.
func seed(endpoints []string, root string) (written, kept int, err error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
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
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(data))).
			Commit()
		if err != nil {
			return fmt.Errorf("seed %s: %w", key, err)
		}
		if resp.Succeeded {
			written++
		} else {
			kept++
		}
		return nil
	})
	return written, kept, err
}
