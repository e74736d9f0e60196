package configcli

import (
	"context"
	"slices"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// histEntry is one write of a key.
type histEntry struct {
	Revision int64
	Delete   bool
	Value    []byte // nil for a delete
}

// keyHistory replays every write of key etcd still has, oldest first, by
// watching it from the oldest revision not compacted. The replay ends at the
// key's last write: its current mod revision, or for a deleted key the
// revision of the delete as its audit record tells (without one, a deleted
// key's history cannot be bounded and none is returned). compacted is the
// compaction revision when older writes are gone, else 0.
func (r *runner) keyHistory(ctx context.Context, cli *clientv3.Client, key string) (entries []histEntry, compacted int64, err error) {
	gctx, cancel := r.reqCtx(ctx)
	resp, err := cli.Get(gctx, key)
	cancel()
	if err != nil {
		return nil, 0, r.etcdErr("read "+key, err)
	}
	var last int64
	var current []byte
	if len(resp.Kvs) > 0 {
		last, current = resp.Kvs[0].ModRevision, nonNil(resp.Kvs[0].Value)
	} else {
		recs, err := r.listAudit(ctx, cli, key, 0, 0)
		if err != nil {
			return nil, 0, err
		}
		for _, rec := range slices.Backward(recs) {
			if slices.ContainsFunc(rec.Keys, func(k auditKey) bool { return k.Key == key && k.Action == "delete" }) {
				last = rec.Revision
				break
			}
		}
		if last == 0 {
			return nil, 0, nil
		}
	}

	rctx, cancel := context.WithTimeout(ctx, r.g.timeout)
	defer cancel()
	start := int64(1)
	for {
		if last < start {
			// Everything before the compaction is gone; the current value
			// is all that is left.
			if current != nil {
				return []histEntry{{Revision: last, Value: current}}, compacted, nil
			}
			return nil, compacted, nil
		}
		entries, restartAt, err := r.replay(rctx, cli, key, start, last)
		if err != nil {
			return nil, 0, err
		}
		if restartAt == 0 {
			return entries, compacted, nil
		}
		start, compacted = restartAt, restartAt
	}
}

// replay watches key from start and collects its writes up to last. A
// compacted start returns the compaction revision to restart from.
func (r *runner) replay(ctx context.Context, cli *clientv3.Client, key string, start, last int64) ([]histEntry, int64, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []histEntry
	for resp := range cli.Watch(wctx, key, clientv3.WithRev(start)) {
		if resp.CompactRevision != 0 {
			return nil, resp.CompactRevision, nil
		}
		if err := resp.Err(); err != nil {
			return nil, 0, r.etcdErr("replay the history of "+key, err)
		}
		for _, ev := range resp.Events {
			e := histEntry{Revision: ev.Kv.ModRevision, Delete: ev.Type == clientv3.EventTypeDelete}
			if !e.Delete {
				e.Value = nonNil(ev.Kv.Value)
			}
			out = append(out, e)
			if e.Revision >= last {
				return out, 0, nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, r.etcdErr("replay the history of "+key, err)
	}
	return nil, 0, r.etcdErr("replay the history of "+key, context.Canceled)
}

func (r *runner) historyCommand() *cobra.Command {
	var key string
	var limit int
	var values, reveal bool
	cmd := &cobra.Command{
		Use:   "history [COMPONENT]",
		Short: "List the past values of a key that etcd has not compacted",
		Long: `List the writes of --key (or COMPONENT for --env and --service) that etcd has
not compacted, newest first: the revision, PUT or DELETE, who wrote it and
when (from the audit record, for writes made by this tool) and the changed
fields, secrets masked. --values shows each whole document instead. Any
revision listed can be passed to rollback --to-revision.`,
		Args: cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if key == "" {
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
				entries, compacted, err := r.keyHistory(cmd.Context(), cli, key)
				if err != nil {
					return err
				}
				var minRev int64
				if len(entries) > 0 {
					minRev = entries[0].Revision
				}
				recs, err := r.listAudit(cmd.Context(), cli, key, minRev, 0)
				if err != nil {
					return err
				}
				return r.printHistory(key, entries, compacted, recs, limit, values, reveal)
			})
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "the key (instead of --env, --service and COMPONENT)")
	cmd.Flags().IntVar(&limit, "limit", 20, "show the last N writes (0: all)")
	cmd.Flags().BoolVar(&values, "values", false, "show each whole document instead of the changes")
	cmd.Flags().BoolVar(&reveal, "reveal", false, "with --values, show secrets")
	return cmd
}

func (r *runner) printHistory(key string, entries []histEntry, compacted int64, recs []auditRecord, limit int, values, reveal bool) error {
	type shown struct {
		Revision int64         `json:"revision"`
		Type     string        `json:"type"`
		Time     *time.Time    `json:"time,omitempty"`
		User     string        `json:"user,omitempty"`
		Op       string        `json:"op,omitempty"`
		Value    any           `json:"value,omitempty"`
		Changes  []fieldChange `json:"changes,omitempty"`
	}
	byRev := map[int64]auditRecord{}
	for _, rec := range recs {
		byRev[rec.Revision] = rec
	}
	var cp *Component
	if comp, ok := r.component(key); ok {
		cp = &comp
	}
	var out []shown
	var prev []byte
	for _, e := range entries {
		s := shown{Revision: e.Revision, Type: "PUT"}
		if e.Delete {
			s.Type = "DELETE"
		}
		if rec, ok := byRev[e.Revision]; ok {
			t := rec.Time
			s.Time, s.User, s.Op = &t, rec.User, rec.Op
		}
		if values {
			if !e.Delete {
				s.Value, _ = showDocument(e.Value, cp, reveal)
			}
		} else {
			s.Changes = diffDocuments(prev, e.Value, cp)
		}
		prev = e.Value
		out = append(out, s)
	}
	slices.Reverse(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	if r.jsonOutput() {
		r.writeJSON(map[string]any{"ok": true, "key": key, "compactedBefore": compacted, "entries": nonNilSlice(out)})
		return nil
	}
	if len(out) == 0 {
		r.printf("no history of %s: it does not exist, and no audit record says when it was deleted\n", key)
	}
	for _, s := range out {
		who := "(not written by this tool)"
		if s.Time != nil {
			who = s.Time.UTC().Format(time.RFC3339) + "  " + s.User + "  " + s.Op
		}
		r.printf("rev %d  %-6s %s\n", s.Revision, s.Type, who)
		if values && s.Value != nil {
			r.printf("%s\n", indentJSON(s.Value))
		}
		for _, c := range s.Changes {
			r.printf("    %s\n", c)
		}
	}
	if compacted > 0 {
		r.printf("(writes before revision %d are compacted)\n", compacted)
	}
	return nil
}
