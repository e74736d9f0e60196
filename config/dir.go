package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gochat/im-infra/lifecycle"
)

// DirSource reads documents from files laid out like the keys:
// /config/{env}/{service}/{component} is {root}/{env}/{service}/{component}.json.
// It polls for changes (default every 500ms), which is plenty for local
// development, where it is meant to be used.
type DirSource struct {
	root     string
	interval time.Duration

	mu   sync.Mutex
	rev  int64
	seen map[string][]byte // last content handed out per key; nil = absent
}

// NewDirSource reads documents under root. interval <= 0 means 500ms.
func NewDirSource(root string, interval time.Duration) *DirSource {
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	return &DirSource{root: root, interval: interval, seen: map[string][]byte{}}
}

// Name is "dir".
func (d *DirSource) Name() string { return "dir" }

// Path is the file that holds key.
func (d *DirSource) Path(key string) (string, error) {
	rel, ok := strings.CutPrefix(key, "/config/")
	if !ok || rel == "" || strings.Contains(rel, "..") {
		return "", lifecycle.ConfigError("config", "key", fmt.Sprintf("key %q is not under /config/", key), nil)
	}
	return filepath.Join(d.root, filepath.FromSlash(rel)+".json"), nil
}

// Load reads the files of keys.
func (d *DirSource) Load(ctx context.Context, keys ...string) ([]Document, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	docs, err := d.scanLocked(keys)
	if err != nil {
		return nil, 0, err
	}
	return docs, d.rev, ctx.Err()
}

// Watch polls the files of keys and reports each change after revision.
func (d *DirSource) Watch(ctx context.Context, revision int64, fn func(Document), keys ...string) error {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		d.mu.Lock()
		before := make(map[string][]byte, len(keys))
		for _, k := range keys {
			before[k] = d.seen[k]
		}
		docs, err := d.scanLocked(keys)
		d.mu.Unlock()
		if err != nil {
			return err
		}
		for _, doc := range docs {
			if doc.Revision > revision && !sameDoc(before[doc.Key], doc.Data) {
				fn(doc)
			}
		}
	}
}

func sameDoc(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// scanLocked reads keys, bumping the revision of each changed one.
func (d *DirSource) scanLocked(keys []string) ([]Document, error) {
	docs := make([]Document, len(keys))
	for i, k := range keys {
		p, err := d.Path(k)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			data, err = nil, nil
		} else if err == nil && data == nil {
			data = []byte{}
		}
		if err != nil {
			return nil, lifecycle.WrapError(lifecycle.TypeConnection, "config", "read "+p, err, "")
		}
		if prev, ok := d.seen[k]; !ok || !sameDoc(prev, data) {
			d.rev++
			d.seen[k] = data
		}
		docs[i] = Document{Key: k, Data: d.seen[k], Revision: d.rev}
	}
	return docs, nil
}
