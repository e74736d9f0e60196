package configcli

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// auditTimeLayout names audit keys so they sort by time: fixed width, UTC.
const auditTimeLayout = "20060102T150405.000000000Z"

// auditRecord is the value of an audit key, written in the same etcd
// transaction as the change it describes. Its own mod revision is therefore
// the revision of that change; it is reported as Revision and not stored.
type auditRecord struct {
	Key          string         `json:"key,omitempty"`      // the audit key (when listed)
	Revision     int64          `json:"revision,omitempty"` // the revision of the write (when listed)
	Time         time.Time      `json:"time"`
	User         string         `json:"user"` // the etcd user, else the OS user
	EtcdUser     string         `json:"etcdUser,omitempty"`
	OSUser       string         `json:"osUser,omitempty"`
	Host         string         `json:"host,omitempty"`
	Op           string         `json:"op"` // init, import, set, delete, rollback
	Env          string         `json:"env"`
	BaseRevision int64          `json:"baseRevision"` // the revision the write was checked at
	Keys         []auditKey     `json:"keys"`
	Detail       map[string]any `json:"detail,omitempty"` // toRevision, ifRevision, force, path
}

// auditKey is one key a write changed.
type auditKey struct {
	Key             string `json:"key"`
	Action          string `json:"action"`          // put or delete
	PrevModRevision int64  `json:"prevModRevision"` // 0: the key did not exist; rollback --to-revision this to undo
	File            string `json:"file,omitempty"`  // the local file it came from (import)
}

// listAudit reads the audit records, oldest first: with key set, only
// those that changed it; with minRev, only those from that revision on;
// with last > 0 (and no key), only the last ones.
func (r *runner) listAudit(ctx context.Context, cli *clientv3.Client, key string, minRev int64, last int) ([]auditRecord, error) {
	ctx, cancel := r.reqCtx(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if key == "" && last > 0 {
		// Keys sort by time: the newest are the last ones.
		opts = []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(last))}
	}
	if minRev > 0 {
		opts = append(opts, clientv3.WithMinModRev(minRev))
	}
	resp, err := cli.Get(ctx, r.g.auditPrefix, opts...)
	if err != nil {
		return nil, r.etcdErr("read "+r.g.auditPrefix, err)
	}
	var out []auditRecord
	for _, kv := range resp.Kvs {
		var rec auditRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			rec = auditRecord{Op: "(unreadable record)"}
		}
		rec.Key, rec.Revision = string(kv.Key), kv.ModRevision
		if key != "" && !slices.ContainsFunc(rec.Keys, func(k auditKey) bool { return k.Key == key }) {
			continue
		}
		out = append(out, rec)
	}
	if key == "" && last > 0 {
		slices.Reverse(out)
	}
	return out, nil
}

func (r *runner) auditCommand() *cobra.Command {
	var key string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List the audit records of config writes",
		Long: `List the audit records every write (init, import, set, delete, rollback)
leaves under --audit-prefix, oldest first: the revision of the write, when,
who (the etcd user, else the OS user), the operation and the keys. A record
holds no values.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErr("--limit must not be negative")
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				recs, err := r.listAudit(cmd.Context(), cli, key, 0, limit)
				if err != nil {
					return err
				}
				if limit > 0 && len(recs) > limit {
					recs = recs[len(recs)-limit:]
				}
				if r.jsonOutput() {
					r.writeJSON(map[string]any{"ok": true, "records": nonNilSlice(recs)})
					return nil
				}
				if len(recs) == 0 {
					r.printf("no audit records under %s\n", r.g.auditPrefix)
				}
				for _, rec := range recs {
					r.printf("%s\n", rec.line())
				}
				return nil
			})
		}),
	}
	cmd.Flags().StringVar(&key, "key", "", "only records that changed this key")
	cmd.Flags().IntVar(&limit, "limit", 50, "show the last N records (0: all)")
	return cmd
}

// line is a record in one line of text.
func (rec auditRecord) line() string {
	var keys []string
	for _, k := range rec.Keys {
		sign := "~"
		switch {
		case k.Action == "delete":
			sign = "-"
		case k.PrevModRevision == 0:
			sign = "+"
		}
		keys = append(keys, sign+k.Key)
	}
	var b strings.Builder
	b.WriteString(rec.Time.UTC().Format(time.RFC3339))
	b.WriteString("  rev ")
	b.WriteString(strconv.FormatInt(rec.Revision, 10))
	b.WriteString("  ")
	b.WriteString(rec.User)
	if rec.EtcdUser == "" && rec.OSUser != "" {
		b.WriteString(" (os user)")
	}
	b.WriteString("  ")
	b.WriteString(rec.Op)
	if to, ok := rec.Detail["toRevision"]; ok {
		b.WriteString(" to ")
		b.WriteString(jsonText(to))
	}
	b.WriteString("  ")
	b.WriteString(strings.Join(keys, " "))
	return b.String()
}

func jsonText(v any) string { b, _ := json.Marshal(v); return string(b) }

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
