package configcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
)

func (r *runner) getCommand() *cobra.Command {
	var key string
	var reveal, effective bool
	cmd := &cobra.Command{
		Use:   "get [COMPONENT]",
		Short: "Show a document, secrets masked",
		Long: `Show the document of COMPONENT for --env and --service, or the value at --key
(any key). Every config.Secret field of the component's type and every
"enc:" value is shown as ****** unless --reveal ("${VAR}" references stay
visible). --reveal shows the stored value: an encrypted value stays
encrypted. --effective shows instead the config the service runs with:
defaults, then the global document, then the service's, as its own type
prints it (with --reveal, secrets in clear, encrypted ones decrypted with
IMINFRA_CONFIG_KEY).`,
		Args: cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if key == "" || effective {
				k, rest, err := r.configKey(cmd, args, key)
				if err != nil {
					return err
				}
				if len(rest) > 0 {
					return usageErr("unexpected argument %q", rest[0])
				}
				key = k
			} else if len(args) > 0 {
				return usageErr("give either --key or a component, not both")
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				if effective {
					return r.getEffective(cmd.Context(), cli, key, reveal)
				}
				return r.get(cmd.Context(), cli, key, reveal)
			})
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the etcd key to show (instead of --env, --service and COMPONENT)")
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show secrets")
	cmd.Flags().BoolVar(&effective, "effective", false, "show the merged config the service runs with")
	return cmd
}

func (r *runner) get(ctx context.Context, cli *clientv3.Client, key string, reveal bool) error {
	gctx, cancel := r.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Get(gctx, key)
	if err != nil {
		return r.etcdErr("read "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return invalidErr("no document at %s (etcd at revision %d)", key, resp.Header.Revision)
	}
	kv := resp.Kvs[0]
	var cp *Component
	if comp, ok := r.component(key); ok {
		cp = &comp
	}
	doc, text := showDocument(kv.Value, cp, reveal)
	if r.jsonOutput() {
		r.writeJSON(map[string]any{"ok": true, "key": key, "revision": resp.Header.Revision,
			"modRevision": kv.ModRevision, "version": kv.Version, "value": doc})
		return nil
	}
	r.printf("# %s  mod revision %d  version %d\n%s\n", key, kv.ModRevision, kv.Version, text)
	return nil
}

func (r *runner) getEffective(ctx context.Context, cli *clientv3.Client, key string, reveal bool) error {
	env, svc, name, _ := parseConfigKey(key)
	comp, ok := r.reg.lookup(name)
	if !ok {
		return invalidErr("--effective needs the component's type, and this build does not know %q", name)
	}
	keys := []string{config.GlobalKey(env, name)}
	if svc != config.GlobalService {
		keys = append(keys, key)
	}
	gctx, cancel := r.reqCtx(ctx)
	defer cancel()
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resp, err := cli.Txn(gctx).Then(ops...).Commit()
	if err != nil {
		return r.etcdErr("read "+strings.Join(keys, ", "), err)
	}
	var layers []config.Layer
	var present []string
	note := func(s string) { r.notef("note: %s", s) }
	for i, rr := range resp.Responses {
		if kvs := rr.GetResponseRange().GetKvs(); len(kvs) > 0 {
			// What only the service's environment supplies shows as
			// where it comes from.
			layers = append(layers, config.Layer{Key: keys[i], Data: prepare(comp, nonNil(kvs[0].Value), note)})
			present = append(present, keys[i])
		}
	}
	cfg, err := comp.parse(layers)
	if err != nil {
		field, msg := describe(err)
		return &exitError{code: ExitInvalid, msg: "the documents in etcd do not make a valid config: the service refuses them and keeps its last valid config",
			problems: []problem{{Key: strings.Join(present, " + "), Component: name, Field: field, Message: msg}}}
	}
	b, err := plainJSON(cfg, reveal)
	if err != nil {
		return err
	}
	doc, _ := decodeJSON(b)
	if r.jsonOutput() {
		r.writeJSON(map[string]any{"ok": true, "key": key, "revision": resp.Header.Revision, "layers": nonNilSlice(present), "value": doc})
		return nil
	}
	r.printf("# effective %s config of %s/%s at revision %d: %s\n%s\n", name, env, svc, resp.Header.Revision,
		strings.Join(append([]string{"defaults"}, present...), " + "), indentJSON(doc))
	return nil
}

// readValue reads the document to write: the argument, or --file (- for stdin).
func (r *runner) readValue(rest []string, file string) ([]byte, string, error) {
	switch {
	case file != "" && len(rest) > 0:
		return nil, "", usageErr("give the document either as an argument or with --file, not both")
	case len(rest) > 1:
		return nil, "", usageErr("unexpected argument %q", rest[1])
	case len(rest) == 1:
		return []byte(rest[0]), "", nil
	case file == "-":
		b, err := io.ReadAll(r.in)
		if err != nil {
			return nil, "", usageErr("read stdin: %v", err)
		}
		return b, "", nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, "", usageErr("--file %s: %v", file, cleanFSError(err))
		}
		return b, file, nil
	}
	return nil, "", usageErr("give the document as an argument or with --file (- reads stdin)")
}

func (r *runner) setCommand() *cobra.Command {
	var key, file string
	var ifRev int64
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "set [COMPONENT] [DOCUMENT]",
		Short: "Check and write one document",
		Long: `Write DOCUMENT (or --file, - for stdin) as the document of COMPONENT for --env
and --service, or at --key, after checking it as import does: with the
component's type, over the global layer (or, for a global document, under
every service's document). --if-revision R writes only if the key is still
at mod revision R (0: only if it does not exist), as get shows it.`,
		Args: cobra.MaximumNArgs(2),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, rest, err := r.configKey(cmd, args, key)
			if err != nil {
				return err
			}
			data, src, err := r.readValue(rest, file)
			if err != nil {
				return err
			}
			if len(strings.TrimSpace(string(data))) == 0 {
				return usageErr("the document is empty (to take a layer away, use delete)")
			}
			env, _, _, _ := parseConfigKey(k)
			p := plan{op: "set", env: env, dryRun: dryRun, detail: map[string]any{},
				build: func(before map[string]docState) ([]change, error) {
					return []change{{Key: k, Data: data, Source: src}}, nil
				}}
			if cmd.Flags().Changed("if-revision") {
				if ifRev < 0 {
					return usageErr("--if-revision must not be negative")
				}
				p.guard = &guard{key: k, modRev: ifRev}
				p.detail["ifRevision"] = ifRev
				p.build = func(before map[string]docState) ([]change, error) {
					if cur := before[k].modRev; cur != ifRev {
						return nil, invalidErr("%s is at mod revision %d, not %d (--if-revision): someone changed it; nothing was written", k, cur, ifRev)
					}
					return []change{{Key: k, Data: data, Source: src}}, nil
				}
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error { return r.apply(cmd.Context(), cli, p) })
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the config key to write (instead of --env, --service and COMPONENT)")
	cmd.Flags().StringVar(&file, "file", "", "read the document from this file (- for stdin)")
	cmd.Flags().Int64Var(&ifRev, "if-revision", 0, "write only if the key is at this mod revision (0: does not exist)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check and show the differences, write nothing")
	return cmd
}

func (r *runner) deleteCommand() *cobra.Command {
	var key string
	var ifRev int64
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "delete [COMPONENT]",
		Short: "Delete one document, after checking the layer below still makes a valid config",
		Long: `Delete the document of COMPONENT for --env and --service, or at --key. The
service then runs on the layers below; that they make a valid config is
checked first. --if-revision R deletes only if the key is still at mod
revision R.`,
		Args: cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, rest, err := r.configKey(cmd, args, key)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return usageErr("unexpected argument %q", rest[0])
			}
			env, _, _, _ := parseConfigKey(k)
			useGuard := cmd.Flags().Changed("if-revision")
			p := plan{op: "delete", env: env, dryRun: dryRun, detail: map[string]any{},
				build: func(before map[string]docState) ([]change, error) {
					cur, ok := before[k]
					if !ok {
						return nil, invalidErr("no document at %s; nothing was deleted", k)
					}
					if useGuard && cur.modRev != ifRev {
						return nil, invalidErr("%s is at mod revision %d, not %d (--if-revision): someone changed it; nothing was deleted", k, cur.modRev, ifRev)
					}
					return []change{{Key: k, Delete: true}}, nil
				}}
			if useGuard {
				p.guard = &guard{key: k, modRev: ifRev}
				p.detail["ifRevision"] = ifRev
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error { return r.apply(cmd.Context(), cli, p) })
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the config key to delete (instead of --env, --service and COMPONENT)")
	cmd.Flags().Int64Var(&ifRev, "if-revision", 0, "delete only if the key is at this mod revision")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check and show the differences, delete nothing")
	return cmd
}

func (r *runner) rollbackCommand() *cobra.Command {
	var key string
	var toRev int64
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "rollback [COMPONENT]",
		Short: "Write back the document a key held at an earlier revision, checked",
		Long: `Write back the value --key (or COMPONENT for --env and --service) held at
--to-revision (history lists them; an audit record's prevModRevision undoes
that write), checked like set. If the key did not exist at that revision, it
is deleted. A compacted revision cannot be rolled back to.`,
		Args: cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			k, rest, err := r.configKey(cmd, args, key)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return usageErr("unexpected argument %q", rest[0])
			}
			if toRev <= 0 {
				return usageErr("--to-revision is required (a positive revision, as history shows)")
			}
			env, _, _, _ := parseConfigKey(k)
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				gctx, cancel := r.reqCtx(cmd.Context())
				resp, err := cli.Get(gctx, k, clientv3.WithRev(toRev))
				cancel()
				switch {
				case errors.Is(rpctypes.Error(err), rpctypes.ErrCompacted):
					return invalidErr("revision %d of %s has been compacted away; history shows the revisions left", toRev, k)
				case errors.Is(rpctypes.Error(err), rpctypes.ErrFutureRev):
					return invalidErr("revision %d is in the future of this etcd", toRev)
				case err != nil:
					return r.etcdErr(fmt.Sprintf("read %s at revision %d", k, toRev), err)
				}
				ch := change{Key: k, Delete: true}
				if len(resp.Kvs) > 0 {
					ch = change{Key: k, Data: nonNil(resp.Kvs[0].Value)}
				} else {
					r.notef("note: %s did not exist at revision %d: rolling back deletes it", k, toRev)
				}
				return r.apply(cmd.Context(), cli, plan{
					op: "rollback", env: env, dryRun: dryRun,
					detail: map[string]any{"toRevision": toRev},
					build:  func(map[string]docState) ([]change, error) { return []change{ch}, nil },
				})
			})
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the config key to roll back (instead of --env, --service and COMPONENT)")
	cmd.Flags().Int64Var(&toRev, "to-revision", 0, "the revision whose value to write back (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check and show the differences, write nothing")
	return cmd
}

func (r *runner) watchCommand() *cobra.Command {
	var key string
	var exact bool
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream changes under a prefix until interrupted",
		Long: `Stream every change under --key (a prefix; default /config/{env}/{service}/,
or /config/{env}/ without --service) until interrupted: the revision, the
time it was seen, PUT or DELETE, the key and the changed fields, secrets
masked. With --output json, one JSON object per line.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if key == "" {
				env, err := r.requireEnv()
				if err != nil {
					return usageErr("pass --key PREFIX, or --env (and --service)")
				}
				key = "/config/" + env + "/"
				if r.g.service != "" {
					svc, err := r.requireService()
					if err != nil {
						return err
					}
					key += svc + "/"
				}
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error { return r.watch(cmd.Context(), cli, key, !exact) })
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the prefix (or with --exact, the key) to watch")
	cmd.Flags().BoolVar(&exact, "exact", false, "watch only the key itself, not the keys under it")
	return cmd
}

func (r *runner) watch(ctx context.Context, cli *clientv3.Client, key string, prefix bool) error {
	opts := []clientv3.OpOption{clientv3.WithPrevKV(), clientv3.WithCreatedNotify()}
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range cli.Watch(wctx, key, opts...) {
		if err := resp.Err(); err != nil {
			return r.etcdErr("watch "+key, err)
		}
		if resp.Created {
			r.notef("watching %s from revision %d; interrupt to stop", key, resp.Header.Revision+1)
			continue
		}
		seen := time.Now().UTC()
		for _, ev := range resp.Events {
			k := string(ev.Kv.Key)
			var cp *Component
			if comp, ok := r.component(k); ok {
				cp = &comp
			}
			var old, cur []byte
			if ev.PrevKv != nil {
				old = nonNil(ev.PrevKv.Value)
			}
			typ := "PUT"
			if ev.Type == clientv3.EventTypeDelete {
				typ = "DELETE"
			} else {
				cur = nonNil(ev.Kv.Value)
			}
			changes := diffDocuments(old, cur, cp)
			if r.jsonOutput() {
				line := map[string]any{"revision": ev.Kv.ModRevision, "time": seen, "type": typ, "key": k, "changes": nonNilSlice(changes)}
				b, _ := json.Marshal(line)
				fmt.Fprintf(r.out, "%s\n", b)
				continue
			}
			fmt.Fprintf(r.out, "rev %d  %s  %-6s %s\n", ev.Kv.ModRevision, seen.Format(time.RFC3339), typ, k)
			for _, c := range changes {
				fmt.Fprintf(r.out, "    %s\n", c)
			}
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal end
	}
	return &exitError{code: ExitConnection, msg: "watch " + key + ": etcd ended the watch"}
}
