package configcli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"reflect"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// writeAttempts bounds how often a write is re-checked when etcd changed
// between reading and writing.
const writeAttempts = 3

// plan is one validated write: init, import, set, delete or rollback.
type plan struct {
	op  string // audit op name
	env string
	// build computes the changes from the documents in etcd now.
	build func(before map[string]docState) ([]change, error)
	// guard is the caller's own compare-and-swap condition (set and
	// delete --if-revision), or nil; build checks it too.
	guard *guard
	// detail is added to the audit record.
	detail map[string]any
	dryRun bool
}

// guard is a compare-and-swap on one key's mod revision.
type guard struct {
	key    string
	modRev int64 // 0: the key must not exist
}

var errConflict = errors.New("etcd changed while checking")

// apply reads the env, builds and checks the changes, and writes them with
// their audit record in one transaction that only succeeds if nothing the
// check depended on changed in between; otherwise it checks again.
func (r *runner) apply(ctx context.Context, cli *clientv3.Client, p plan) error {
	for attempt := 1; ; attempt++ {
		before, rev, err := r.readEnv(ctx, cli, p.env)
		if err != nil {
			return err
		}
		changes, err := p.build(before)
		if err != nil {
			return err
		}
		changes = dropNoOps(before, changes)
		var progress func(done, total int)
		if len(changes) > progressThreshold {
			progress = func(done, total int) {
				if done%progressThreshold == 0 || done == total {
					r.notef("checked %d/%d documents", done, total)
				}
			}
		}
		res := r.check(p.env, before, changes, progress)
		for _, n := range res.notes {
			r.notef("note: %s", n)
		}
		if len(res.problems) > 0 {
			return &exitError{code: ExitInvalid, problems: res.problems,
				msg: fmt.Sprintf("%d problem(s) found; nothing was written", len(res.problems))}
		}
		if len(changes) == 0 {
			r.printf("nothing to write: etcd already holds these documents\n")
			if r.jsonOutput() {
				r.writeJSON(map[string]any{"ok": true, "written": 0, "revision": rev})
			}
			return nil
		}
		if p.dryRun {
			return r.printPlan(before, changes)
		}
		if len(changes) > progressThreshold {
			r.notef("writing %d keys in one transaction", len(changes))
		}
		wrote, auditKey, err := r.commit(ctx, cli, p, before, rev, changes, res.used)
		if errors.Is(err, errConflict) {
			// The next build sees what changed: a lost --if-revision
			// fails there with its own message.
			if attempt < writeAttempts {
				r.notef("etcd changed while checking; checking again")
				continue
			}
			return invalidErr("etcd kept changing while checking (%d attempts); nothing was written", writeAttempts)
		}
		if err != nil {
			return err
		}
		keys := make([]string, len(changes))
		for i, ch := range changes {
			keys[i] = ch.Key
		}
		if r.jsonOutput() {
			r.writeJSON(map[string]any{"ok": true, "written": len(changes), "revision": wrote, "keys": keys, "audit": auditKey})
			return nil
		}
		for _, ch := range changes {
			verb := "put"
			if ch.Delete {
				verb = "deleted"
			}
			r.printf("%-7s %s\n", verb, ch.Key)
		}
		r.printf("%d key(s) written at revision %d (audit %s)\n", len(changes), wrote, auditKey)
		return nil
	}
}

// progressThreshold is the import size above which progress goes to stderr.
const progressThreshold = 50

// dropNoOps leaves out puts of a document etcd already holds (equal as
// JSON) and deletes of absent keys.
func dropNoOps(before map[string]docState, changes []change) []change {
	out := changes[:0:0]
	for _, ch := range changes {
		cur, exists := before[ch.Key]
		if ch.Delete && !exists {
			continue
		}
		if !ch.Delete && exists && sameJSON(cur.data, ch.Data) {
			continue
		}
		out = append(out, ch)
	}
	return out
}

// sameJSON reports whether a and b are the same document, ignoring layout.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := decodeJSON(a)
	vb, errB := decodeJSON(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

// printPlan shows what a dry run would write, with secrets masked.
func (r *runner) printPlan(before map[string]docState, changes []change) error {
	type planned struct {
		Key     string        `json:"key"`
		File    string        `json:"file,omitempty"`
		Action  string        `json:"action"`
		Changes []fieldChange `json:"changes,omitempty"`
	}
	var out []planned
	for _, ch := range changes {
		comp, known := r.component(ch.Key)
		var cp *Component
		if known {
			cp = &comp
		}
		cur, exists := before[ch.Key]
		pl := planned{Key: ch.Key, File: ch.Source}
		switch {
		case ch.Delete:
			pl.Action = "delete"
			pl.Changes = diffDocuments(cur.data, nil, cp)
		case exists:
			pl.Action = "update"
			pl.Changes = diffDocuments(cur.data, ch.Data, cp)
		default:
			pl.Action = "create"
			pl.Changes = diffDocuments(nil, ch.Data, cp)
		}
		out = append(out, pl)
	}
	if r.jsonOutput() {
		r.writeJSON(map[string]any{"ok": true, "dryRun": true, "changes": out})
		return nil
	}
	for _, pl := range out {
		r.printf("%s %s\n", pl.Action, pl.Key)
		for _, c := range pl.Changes {
			r.printf("    %s\n", c)
		}
	}
	r.printf("dry run: %d key(s) would be written; nothing was written\n", len(out))
	return nil
}

// commit writes changes and the audit record in one transaction, guarded
// so it fails (errConflict) if any key the check read or the write touches
// changed, or any document of the env was written, since revision rev.
func (r *runner) commit(ctx context.Context, cli *clientv3.Client, p plan, before map[string]docState, rev int64, changes []change, used []string) (int64, string, error) {
	prefix := "/config/" + p.env + "/"
	cmps := []clientv3.Cmp{
		// Nothing in the env was created or rewritten since the read ...
		clientv3.Compare(clientv3.ModRevision(prefix), "<", rev+1).WithPrefix(),
	}
	// ... and no document the check read was deleted (a delete leaves no
	// mod revision for the range to compare). A key the write itself puts
	// or deletes needs no guard: the result is the same either way.
	for _, k := range used {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", before[k].modRev))
	}
	if p.guard != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p.guard.key), "=", p.guard.modRev))
	}

	rec := r.auditRecord(p, rev, before, changes)
	auditKey := r.g.auditPrefix + rec.Time.UTC().Format(auditTimeLayout) + "-" + randomSuffix()
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(auditKey), "=", 0))
	recJSON, err := json.Marshal(rec)
	if err != nil {
		return 0, "", fmt.Errorf("encode audit record: %w", err)
	}
	ops := make([]clientv3.Op, 0, len(changes)+1)
	for _, ch := range changes {
		if ch.Delete {
			ops = append(ops, clientv3.OpDelete(ch.Key))
		} else {
			ops = append(ops, clientv3.OpPut(ch.Key, string(ch.Data)))
		}
	}
	ops = append(ops, clientv3.OpPut(auditKey, string(recJSON)))
	if len(ops) > r.g.maxTxnOps || len(cmps) > r.g.maxTxnOps {
		return 0, "", invalidErr("this write needs %d operations and %d comparisons in one transaction (%d keys and the audit record; a guard on each unchanged document the check read), more than etcd allows in one (--max-txn-ops %d, etcd's default); nothing was written. It is never split, so that it applies all or nothing: raise etcd's --max-txn-ops and pass the same --max-txn-ops here, or write fewer documents at once",
			len(ops), len(cmps), len(changes), r.g.maxTxnOps)
	}
	tctx, cancel := r.reqCtx(ctx)
	defer cancel()
	resp, err := cli.Txn(tctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, "", r.etcdErr(fmt.Sprintf("write %d key(s)", len(changes)), err)
	}
	if !resp.Succeeded {
		return 0, "", errConflict
	}
	return resp.Header.Revision, auditKey, nil
}

// auditRecord describes a write for the audit prefix. It holds no values,
// so no secret reaches it.
func (r *runner) auditRecord(p plan, rev int64, before map[string]docState, changes []change) auditRecord {
	osUser := currentOSUser()
	rec := auditRecord{
		Time:         time.Now().UTC(),
		User:         r.g.user,
		EtcdUser:     r.g.user,
		OSUser:       osUser,
		Op:           p.op,
		Env:          p.env,
		BaseRevision: rev,
		Detail:       p.detail,
	}
	if rec.User == "" {
		rec.User = osUser
	}
	rec.Host, _ = os.Hostname()
	for _, ch := range changes {
		action := "put"
		if ch.Delete {
			action = "delete"
		}
		rec.Keys = append(rec.Keys, auditKey{Key: ch.Key, Action: action, PrevModRevision: before[ch.Key].modRev, File: ch.Source})
	}
	return rec
}

func currentOSUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
