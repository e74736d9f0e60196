package configcli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord"
)

// maxDialTimeout caps one connection attempt; --timeout bounds the request.
const maxDialTimeout = 5 * time.Second

// connect builds the etcd client through coord, which validates the
// endpoints and credentials, loads TLS files and authenticates on the first
// request. It does not touch the network.
func (r *runner) connect() (*coord.Client, error) {
	cfg := coord.Defaults()
	for ep := range strings.SplitSeq(r.g.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			cfg.Endpoints = append(cfg.Endpoints, ep)
		}
	}
	if len(cfg.Endpoints) == 0 {
		return nil, usageErr("no etcd endpoints: pass --endpoints or set %s", coord.EnvEndpoints)
	}
	if r.g.cert != "" && r.g.key == "" && r.keyIsEtcdKey {
		return nil, usageErr("--cert is set but no TLS client key: on %s, --key names an etcd key; give the TLS key with --tls-key or %s", r.cmdPath, coord.EnvTLSKey)
	}
	cfg.Username = r.g.user
	cfg.Password = config.Secret(r.g.password)
	cfg.TLS = coord.TLSConfig{CAFile: r.g.cacert, CertFile: r.g.cert, KeyFile: r.g.key}
	cfg.DialTimeout = config.Duration(min(r.g.timeout, maxDialTimeout))
	cfg.RequestTimeout = config.Duration(r.g.timeout)
	cfg.ProbeTimeout = config.Duration(r.g.timeout)
	c, err := coord.NewClient(cfg, nil)
	if err != nil {
		var ie *lifecycle.InfraError
		if errors.As(err, &ie) {
			return nil, usageErr("etcd connection settings: %s", flagNameOf(ie))
		}
		return nil, usageErr("etcd connection settings: %v", err)
	}
	return c, nil
}

// flagNameOf rewrites a coord config error in terms of the CLI's flags.
func flagNameOf(ie *lifecycle.InfraError) string {
	names := map[string]string{
		"endpoints": "--endpoints", "username": "--user", "password": "--password",
		"tls.caFile": "--cacert", "tls.certFile": "--cert", "tls.keyFile": "--key",
	}
	field := ie.Field
	if strings.HasPrefix(field, "endpoints[") {
		field = "endpoints"
	}
	msg := ie.Message
	if ie.Cause != nil {
		msg += ": " + ie.Cause.Error()
	}
	if n, ok := names[field]; ok {
		return n + ": " + msg
	}
	return msg
}

// withClient connects, runs fn with the raw client and closes it.
func (r *runner) withClient(ctx context.Context, fn func(cli *clientv3.Client) error) error {
	if r.client != nil {
		return fn(r.client)
	}
	c, err := r.connect()
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	return fn(c.Raw())
}

// reqCtx bounds one etcd request by --timeout.
func (r *runner) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.g.timeout)
}

// etcdErr turns an etcd error into a clear exit error; what says what was
// being done ("read /config/dev/").
func (r *runner) etcdErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee
	}
	conn := func(format string, a ...any) error {
		return &exitError{code: ExitConnection, msg: fmt.Sprintf(format, a...)}
	}
	e := rpctypes.Error(err)
	who := r.g.user
	switch {
	case errors.Is(e, rpctypes.ErrPermissionDenied):
		if who == "" {
			return conn("%s: permission denied (no --user given)", what)
		}
		return conn("%s: permission denied for etcd user %q", what, who)
	case errors.Is(e, rpctypes.ErrAuthFailed),
		status.Code(err) == codes.Unauthenticated && strings.Contains(err.Error(), rpctypes.ErrorDesc(rpctypes.ErrGRPCAuthFailed)):
		return conn("%s: etcd rejected the credentials of user %q", what, who)
	case errors.Is(e, rpctypes.ErrUserEmpty):
		return conn("%s: etcd has authentication enabled: pass --user and --password (or %s/%s)", what, coord.EnvUsername, coord.EnvPassword)
	case errors.Is(e, rpctypes.ErrTooManyOps):
		return invalidErr("%s: etcd refused the transaction: more operations than its --max-txn-ops; nothing was written. Raise the server's limit and pass the same --max-txn-ops, or write fewer documents at once", what)
	case errors.Is(e, rpctypes.ErrRequestTooLarge):
		return invalidErr("%s: etcd refused the request as too large (its --max-request-bytes); nothing was written. Write fewer or smaller documents at once", what)
	case errors.Is(e, rpctypes.ErrCompacted):
		return invalidErr("%s: that revision has been compacted away", what)
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		return conn("%s: etcd at %s did not answer within %s (--timeout): check that it runs, that the address is right and that the TLS settings match the server's", what, r.g.endpoints, r.g.timeout)
	case errors.Is(err, context.Canceled):
		return conn("%s: interrupted", what)
	}
	return conn("%s: etcd request failed: %v", what, err)
}

// docState is one config document as read from etcd (or a local file).
type docState struct {
	data   []byte
	modRev int64
	source string // the local file it came from; "" for etcd
}

// readEnv reads every document of env at one revision.
func (r *runner) readEnv(ctx context.Context, cli *clientv3.Client, env string) (map[string]docState, int64, error) {
	prefix := "/config/" + env + "/"
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, r.etcdErr("read "+prefix, err)
	}
	docs := make(map[string]docState, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		docs[string(kv.Key)] = docState{data: nonNil(kv.Value), modRev: kv.ModRevision}
	}
	return docs, resp.Header.Revision, nil
}

// nonNil keeps an empty value apart from a missing one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
