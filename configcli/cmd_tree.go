package configcli

import (
	"bytes"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
)

func (r *runner) initCommand() *cobra.Command {
	var force, dryRun bool
	var only []string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write every component's defaults for a service (or global)",
		Long: `Write the defaults of every known component (or those --components names) as
the documents of --service in --env, in one transaction. Existing keys are
refused, and nothing is written, unless --force. A component whose defaults
are not a valid config on their own (one that needs an address, say) is
skipped with a note: write it with set.

The service's documents then hold every field, so they shadow the global
layer completely; use --service global to write the env-wide layer instead.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			env, err := r.requireEnv()
			if err != nil {
				return err
			}
			svc, err := r.requireService()
			if err != nil {
				return err
			}
			comps, err := r.selectComponents(only)
			if err != nil {
				return err
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				return r.apply(cmd.Context(), cli, plan{
					op: "init", env: env, dryRun: dryRun,
					detail: map[string]any{"service": svc, "force": force},
					build: func(before map[string]docState) ([]change, error) {
						return r.initChanges(env, svc, comps, before, force)
					},
				})
			})
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing documents with the defaults")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be written, write nothing")
	cmd.Flags().StringSliceVar(&only, "components", nil, "only these components (default: every known one)")
	return cmd
}

func (r *runner) selectComponents(only []string) ([]Component, error) {
	if len(only) == 0 {
		out := make([]Component, 0, len(r.reg.byName))
		for _, n := range r.reg.names() {
			out = append(out, r.reg.byName[n])
		}
		return out, nil
	}
	var out []Component
	for _, n := range only {
		c, ok := r.reg.lookup(n)
		if !ok {
			return nil, usageErr("--components: unknown component %q (known: %v)", n, r.reg.names())
		}
		out = append(out, c)
	}
	return out, nil
}

func (r *runner) initChanges(env, svc string, comps []Component, before map[string]docState, force bool) ([]change, error) {
	var changes []change
	var existing []string
	for _, c := range comps {
		key := config.Key(env, svc, c.name)
		if _, ok := before[key]; ok && !force {
			existing = append(existing, key)
			continue
		}
		plain, err := plainJSON(c.defaults(), true)
		if err != nil {
			return nil, invalidErr("%s: encode defaults: %v", c.name, err)
		}
		var data bytes.Buffer
		if err := json.Indent(&data, plain, "", "  "); err != nil {
			return nil, invalidErr("%s: encode defaults: %v", c.name, err)
		}
		data.WriteByte('\n')
		var layers []config.Layer
		if svc != config.GlobalService {
			g := config.GlobalKey(env, c.name)
			if d, ok := before[g]; ok {
				layers = append(layers, config.Layer{Key: g, Data: d.data})
			}
		}
		layers = append(layers, config.Layer{Key: key, Data: data.Bytes()})
		if _, err := c.parse(layers); err != nil {
			field, msg := describe(err)
			r.notef("note: skipped %s: its defaults are not a valid config here (field %q: %s); write its document with set", c.name, field, msg)
			continue
		}
		changes = append(changes, change{Key: key, Data: data.Bytes()})
	}
	if len(existing) > 0 {
		return nil, invalidErr("%d document(s) exist already: %v; nothing was written (--force overwrites them with the defaults)", len(existing), existing)
	}
	return changes, nil
}

func (r *runner) importCommand() *cobra.Command {
	var dir string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Check a directory of documents, then write them all in one transaction",
		Long: `Read DIR/{service}/{component}.json and DIR/global/{component}.json, check
every document with its component's type over the documents already in etcd
(the merge the running services do), and write them all in one etcd
transaction with the audit record, or, if anything is wrong, report every
problem with its file and field and write nothing. Documents etcd already
holds (equal as JSON) are left alone; keys missing from DIR are not deleted.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			env, docs, err := r.envTree(dir, "the directory has names that cannot be keys; nothing was written")
			if err != nil {
				return err
			}
			if len(docs) == 0 {
				return invalidErr("no {service}/{component}.json documents under %s", dir)
			}
			changes := treeChanges(env, docs)
			if len(changes) > progressThreshold {
				r.notef("read %d documents from %s", len(changes), dir)
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				return r.apply(cmd.Context(), cli, plan{
					op: "import", env: env, dryRun: dryRun,
					detail: map[string]any{"path": dir},
					build:  func(map[string]docState) ([]change, error) { return changes, nil },
				})
			})
		}),
	}
	cmd.Flags().StringVar(&dir, "path", "", "directory of {service}/{component}.json documents (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check and show the differences, write nothing")
	return cmd
}

func (r *runner) exportCommand() *cobra.Command {
	var dir string
	var force bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the env's documents to a directory, as import reads them",
		Long: `Write every document of --env (or only --service's and the global ones) to
DIR/{service}/{component}.json exactly as etcd holds it, so that import of
the same directory changes nothing. Encrypted values stay encrypted; files
are mode 0600 since a document may hold a literal secret. A file that
differs from etcd is replaced only with --force.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			env, err := r.requireEnv()
			if err != nil {
				return err
			}
			if dir == "" {
				return usageErr("--path is required")
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				docs, rev, err := r.readEnv(cmd.Context(), cli, env)
				if err != nil {
					return err
				}
				var written, same int
				var files []string
				for _, key := range slices.Sorted(maps.Keys(docs)) {
					_, svc, comp, ok := parseConfigKey(key)
					if !ok {
						r.notef("note: skipped %s: not a /config/{env}/{service}/{component} key", key)
						continue
					}
					if r.g.service != "" && svc != r.g.service && svc != config.GlobalService {
						continue
					}
					p := filepath.Join(dir, svc, comp+".json")
					changed, err := writeTreeFile(p, docs[key].data, force)
					if err != nil {
						return err
					}
					files = append(files, p)
					if changed {
						written++
					} else {
						same++
					}
				}
				if r.jsonOutput() {
					r.writeJSON(map[string]any{"ok": true, "revision": rev, "files": nonNilSlice(files), "written": written, "unchanged": same})
					return nil
				}
				r.printf("exported %d document(s) of env %s at revision %d to %s (%d written, %d unchanged)\n", len(files), env, rev, dir, written, same)
				return nil
			})
		}),
	}
	cmd.Flags().StringVar(&dir, "path", "", "directory to write (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace files that differ from etcd")
	return cmd
}

func (r *runner) validateCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a directory of documents offline, without etcd",
		Long: `Check DIR/{service}/{component}.json and DIR/global/{component}.json as import
would, but against each other only (no etcd): each document with its
component's type, then each service's documents over the global ones.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErr("--path is required")
			}
			env := r.g.env
			if env == "" {
				env = "local"
			} else if err := checkEnv(env); err != nil {
				return err
			}
			docs, problems, err := r.readTree(dir)
			if err != nil {
				return err
			}
			res := r.check(env, map[string]docState{}, treeChanges(env, docs), nil)
			for _, n := range res.notes {
				r.notef("note: %s", n)
			}
			problems = append(problems, res.problems...)
			if len(problems) > 0 {
				return &exitError{code: ExitInvalid, problems: problems, msg: "validation failed"}
			}
			if r.jsonOutput() {
				r.writeJSON(map[string]any{"ok": true, "documents": len(docs)})
				return nil
			}
			r.printf("%d document(s) valid\n", len(docs))
			return nil
		}),
	}
	cmd.Flags().StringVar(&dir, "path", "", "directory of {service}/{component}.json documents (required)")
	return cmd
}

func (r *runner) diffCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show how a directory of documents differs from etcd",
		Long: `Compare DIR/{service}/{component}.json with the documents of --env in etcd
(only --service's and the global ones when --service is given), field by
field, secrets masked: documents only in DIR, only in etcd, and different.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			env, docs, err := r.envTree(dir, "the directory has names that cannot be keys")
			if err != nil {
				return err
			}
			local := treeState(env, docs)
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				remote, rev, err := r.readEnv(cmd.Context(), cli, env)
				if err != nil {
					return err
				}
				return r.printDiff(env, local, remote, rev)
			})
		}),
	}
	cmd.Flags().StringVar(&dir, "path", "", "directory of {service}/{component}.json documents (required)")
	return cmd
}

func (r *runner) printDiff(env string, local, remote map[string]docState, rev int64) error {
	type difference struct {
		Key     string        `json:"key"`
		File    string        `json:"file,omitempty"`
		State   string        `json:"state"` // only-local, only-etcd, differs
		Changes []fieldChange `json:"changes,omitempty"`
	}
	keys := map[string]bool{}
	for k := range local {
		keys[k] = true
	}
	for k := range remote {
		keys[k] = true
	}
	var out []difference
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		_, svc, _, ok := parseConfigKey(k)
		if !ok || (r.g.service != "" && svc != r.g.service && svc != config.GlobalService) {
			continue
		}
		l, inLocal := local[k]
		e, inEtcd := remote[k]
		comp, known := r.component(k)
		var cp *Component
		if known {
			cp = &comp
		}
		d := difference{Key: k, File: l.source}
		switch {
		case inLocal && !inEtcd:
			d.State, d.Changes = "only-local", diffDocuments(nil, l.data, cp)
		case !inLocal && inEtcd:
			d.State, d.Changes = "only-etcd", diffDocuments(e.data, nil, cp)
		case !sameJSON(l.data, e.data):
			d.State, d.Changes = "differs", diffDocuments(e.data, l.data, cp)
		default:
			continue
		}
		out = append(out, d)
	}
	if r.jsonOutput() {
		r.writeJSON(map[string]any{"ok": true, "env": env, "revision": rev, "differences": nonNilSlice(out)})
		return nil
	}
	signs := map[string]string{"only-local": "+", "only-etcd": "-", "differs": "~"}
	for _, d := range out {
		where := map[string]string{"only-local": " (only in " + d.File + ")", "only-etcd": " (only in etcd)", "differs": " (etcd → " + d.File + ")"}[d.State]
		r.printf("%s %s%s\n", signs[d.State], d.Key, where)
		for _, c := range d.Changes {
			r.printf("    %s\n", c)
		}
	}
	if len(out) == 0 {
		r.printf("no differences (etcd at revision %d)\n", rev)
	} else {
		r.printf("%d document(s) differ (etcd at revision %d)\n", len(out), rev)
	}
	return nil
}

// envTree is the start of the commands that compare a directory with an env
// in etcd: --env and --path are required, and every name in the tree must
// make a key (else the problems are reported with msg).
func (r *runner) envTree(dir, msg string) (string, []treeDoc, error) {
	env, err := r.requireEnv()
	if err != nil {
		return "", nil, err
	}
	if dir == "" {
		return "", nil, usageErr("--path is required")
	}
	docs, problems, err := r.readTree(dir)
	if err != nil {
		return "", nil, err
	}
	if len(problems) > 0 {
		return "", nil, &exitError{code: ExitInvalid, problems: problems, msg: msg}
	}
	return env, docs, nil
}
