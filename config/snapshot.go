package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gochat/im-infra/lifecycle"
)

// Snapshot is the last-known-good file: every accepted document is written
// to it, and at boot a Value whose source is down reads its keys back.
//
// One file serves every component of a service. It is written atomically
// (temp file + rename) with mode 0600, because documents may hold secrets
// written as literals; prefer "${ENV_VAR}" secrets, which are expanded at
// decode time and so never reach the file.
//
// A snapshot records the config source it was written from (for etcd, its
// endpoints). A file written for another source, such as one left behind by
// an earlier run against another cluster, is not used: booting on it would
// apply config that this deployment never held.
type Snapshot struct {
	path   string
	source string
	mu     sync.Mutex
	docs   map[string]snapshotDocument // what the file holds, once read or written
}

type snapshotFile struct {
	SavedAt   time.Time                   `json:"savedAt"`
	Source    string                      `json:"source,omitempty"`
	Documents map[string]snapshotDocument `json:"documents"`
}

// ErrSnapshotOtherSource is returned by Snapshot.Load when the file was
// written for another config source.
var ErrSnapshotOtherSource = errors.New("the snapshot was written for another config source")

// snapshotDocument keeps Data as a string, byte for byte: a RawMessage
// would be re-indented on save and no longer compare equal to the source's.
type snapshotDocument struct {
	Revision int64  `json:"revision"`
	Data     string `json:"data"`
}

// NewSnapshot uses the file at path; its directory is created on first
// save. source names where the documents come from (fxinfra passes the etcd
// endpoints); Load refuses a file saved for a different one. An empty source
// matches any file.
func NewSnapshot(path, source string) *Snapshot { return &Snapshot{path: path, source: source} }

// Path is the snapshot file's path.
func (s *Snapshot) Path() string { return s.path }

// Save records docs; a document with nil Data removes its key.
func (s *Snapshot) Save(docs ...Document) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.docs == nil {
		// Read the file once, to keep other components' documents; after
		// that the in-memory copy is the truth and a save is one write.
		f, err := s.read()
		if err != nil {
			f.Documents = map[string]snapshotDocument{}
		}
		s.docs = f.Documents
	}
	changed := false
	for _, d := range docs {
		old, had := s.docs[d.Key]
		if d.Data == nil {
			if had {
				delete(s.docs, d.Key)
				changed = true
			}
			continue
		}
		next := snapshotDocument{Revision: d.Revision, Data: string(d.Data)}
		if !had || old != next {
			s.docs[d.Key] = next
			changed = true
		}
	}
	if !changed {
		return nil // a reload of unchanged documents writes nothing
	}
	f := snapshotFile{SavedAt: time.Now().UTC(), Source: s.source, Documents: s.docs}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return lifecycle.WrapError(lifecycle.TypeInternal, "config", "save snapshot", err, "encode")
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return lifecycle.WrapError(lifecycle.TypeInternal, "config", "save snapshot", err, "create directory")
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".snapshot-*")
	if err != nil {
		return lifecycle.WrapError(lifecycle.TypeInternal, "config", "save snapshot", err, "create temp file")
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return lifecycle.WrapError(lifecycle.TypeInternal, "config", "save snapshot", err, "write")
	}
	if err := tmp.Close(); err != nil {
		return lifecycle.WrapError(lifecycle.TypeInternal, "config", "save snapshot", err, "close")
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return lifecycle.WrapError(lifecycle.TypeInternal, "config", "save snapshot", err, "rename")
	}
	return nil
}

// Load returns the saved documents among keys (keys never saved are left
// out) and when the file was written. A missing file is an error, so the
// caller falls back to defaults.
func (s *Snapshot) Load(keys ...string) ([]Document, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return nil, time.Time{}, err
	}
	if s.source != "" && f.Source != "" && f.Source != s.source {
		return nil, f.SavedAt, lifecycle.ConfigError("config", "", fmt.Sprintf("snapshot %s was written for %q, not %q", s.path, f.Source, s.source), ErrSnapshotOtherSource)
	}
	var out []Document
	for _, k := range keys {
		if d, ok := f.Documents[k]; ok {
			out = append(out, Document{Key: k, Data: []byte(d.Data), Revision: d.Revision})
		}
	}
	return out, f.SavedAt, nil
}

func (s *Snapshot) read() (snapshotFile, error) {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return snapshotFile{}, lifecycle.WrapError(lifecycle.TypeConfig, "config", "read snapshot", err, "")
	}
	var f snapshotFile
	if err := json.Unmarshal(b, &f); err != nil {
		return snapshotFile{}, lifecycle.ConfigError("config", "", fmt.Sprintf("snapshot %s is corrupt", s.path), err)
	}
	if f.Documents == nil {
		f.Documents = map[string]snapshotDocument{}
	}
	return f, nil
}
