package configcli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gochat/im-infra/config"
)

// treeDoc is one document of a local tree: DIR/{service}/{component}.json.
type treeDoc struct {
	service, component string
	path               string
	data               []byte
}

// readTree reads DIR/{service}/{component}.json and DIR/global/{component}.json.
// Names that cannot be keys are problems; other files (README.md, hidden
// files) are skipped with a note.
func (r *runner) readTree(dir string) ([]treeDoc, []problem, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, usageErr("--path %s: %v", dir, cleanFSError(err))
	}
	var docs []treeDoc
	var problems []problem
	for _, svc := range entries {
		if strings.HasPrefix(svc.Name(), ".") {
			continue
		}
		svcPath := filepath.Join(dir, svc.Name())
		if !svc.IsDir() {
			r.notef("note: skipped %s: documents live in %s/{service}/{component}.json", svcPath, dir)
			continue
		}
		if !nameRe.MatchString(svc.Name()) {
			problems = append(problems, problem{File: svcPath, Key: "-", Message: "directory name is not a service name (a DNS label: lowercase letters, digits, '-') or \"global\""})
			continue
		}
		files, err := os.ReadDir(svcPath)
		if err != nil {
			return nil, nil, usageErr("%s: %v", svcPath, cleanFSError(err))
		}
		for _, f := range files {
			p := filepath.Join(svcPath, f.Name())
			name, isJSON := strings.CutSuffix(f.Name(), ".json")
			if strings.HasPrefix(f.Name(), ".") {
				continue
			}
			if f.IsDir() || !isJSON {
				r.notef("note: skipped %s: not a {component}.json file", p)
				continue
			}
			if !nameRe.MatchString(name) {
				problems = append(problems, problem{File: p, Key: "-", Message: "file name is not a component name (a DNS label) followed by .json"})
				continue
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, nil, usageErr("%s: %v", p, cleanFSError(err))
			}
			docs = append(docs, treeDoc{service: svc.Name(), component: name, path: p, data: data})
		}
	}
	return docs, problems, nil
}

// treeChanges turns a tree into puts for env, sorted by key.
func treeChanges(env string, docs []treeDoc) []change {
	out := make([]change, len(docs))
	for i, d := range docs {
		out[i] = change{Key: config.Key(env, d.service, d.component), Data: d.data, Source: d.path}
	}
	slices.SortFunc(out, func(a, b change) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// treeState is a tree as documents (for offline validation and diff).
func treeState(env string, docs []treeDoc) map[string]docState {
	out := make(map[string]docState, len(docs))
	for _, d := range docs {
		out[config.Key(env, d.service, d.component)] = docState{data: d.data, source: d.path}
	}
	return out
}

// writeTreeFile writes one exported document, mode 0600 (a document may
// hold a literal secret), refusing to replace a different file unless force.
func writeTreeFile(path string, data []byte, force bool) (bool, error) {
	if cur, err := os.ReadFile(path); err == nil {
		if string(cur) == string(data) {
			return false, nil
		}
		if !force {
			return false, invalidErr("%s exists and differs from etcd; pass --force to replace it", path)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("%s: %v", path, cleanFSError(err))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("%s: %v", filepath.Dir(path), cleanFSError(err))
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return false, fmt.Errorf("%s: %v", path, cleanFSError(err))
	}
	return true, nil
}

// cleanFSError drops the path os errors repeat.
func cleanFSError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
