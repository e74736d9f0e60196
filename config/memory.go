package config

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/gochat/im-infra/lifecycle"
)

// MemorySource is an in-process Source for tests and examples. It keeps
// every change since the last Compact, so a Watch from a later revision
// replays what came after it; a Watch from before the compaction fails, as
// etcd's does. It can pretend to be down to exercise the degraded path, and
// tells waiting Values when it is up again (RecoveryNotifier).
type MemorySource struct {
	mu        sync.Mutex
	rev       int64
	compacted int64 // watches from a revision below this fail
	data      map[string]Document
	log       []Document    // every change since compacted, in revision order
	changed   chan struct{} // closed and replaced on each change
	recovered chan struct{} // closed and replaced when the source comes back up
	down      bool
	loads     int
}

// NewMemorySource returns an empty, reachable source.
func NewMemorySource() *MemorySource {
	return &MemorySource{data: map[string]Document{}, changed: make(chan struct{}), recovered: make(chan struct{})}
}

// ErrCompacted is returned by MemorySource.Watch from a compacted revision.
var ErrCompacted = errors.New("memory source: revision compacted")

// Name is "memory".
func (m *MemorySource) Name() string { return "memory" }

// Set writes data at key and returns the new revision.
func (m *MemorySource) Set(key string, data []byte) int64 {
	if data == nil {
		data = []byte{}
	}
	return m.write(key, slices.Clone(data))
}

// Delete removes key and returns the new revision.
func (m *MemorySource) Delete(key string) int64 { return m.write(key, nil) }

// SetDown makes Load and Watch fail (down) or work again. Watches running
// when the source goes down return an error, as a broken connection would.
func (m *MemorySource) SetDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down && !down {
		close(m.recovered)
		m.recovered = make(chan struct{})
	}
	m.down = down
	m.notifyLocked()
}

// Recovered implements RecoveryNotifier: the channel closes the next time
// SetDown(false) brings the source back up.
func (m *MemorySource) Recovered() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recovered
}

// Compact forgets the change log up to now: a later Watch from an older
// revision fails with ErrCompacted, so only a reload can see what changed.
// A running watch that has not yet delivered everything up to now fails
// too, as one that falls behind a compaction does in etcd.
func (m *MemorySource) Compact() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.compacted = m.rev
	m.log = nil
	m.notifyLocked()
}

// Loads counts successful Load calls, so tests can tell a reload from a
// watch that resumed.
func (m *MemorySource) Loads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loads
}

func (m *MemorySource) write(key string, data []byte) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	d := Document{Key: key, Data: data, Revision: m.rev}
	if data == nil {
		delete(m.data, key)
	} else {
		m.data[key] = d
	}
	m.log = append(m.log, d)
	m.notifyLocked()
	return m.rev
}

func (m *MemorySource) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

var errMemoryDown = errors.New("memory source is down")

// Load returns the current documents of keys.
func (m *MemorySource) Load(ctx context.Context, keys ...string) ([]Document, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, 0, lifecycle.ConnectionError("config", "load", errMemoryDown)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	docs := make([]Document, len(keys))
	for i, k := range keys {
		if d, ok := m.data[k]; ok {
			docs[i] = d
		} else {
			docs[i] = Document{Key: k, Revision: m.rev}
		}
	}
	m.loads++
	return docs, m.rev, nil
}

// Watch delivers every change to keys after revision.
func (m *MemorySource) Watch(ctx context.Context, revision int64, fn func(Document), keys ...string) error {
	next := revision
	for {
		m.mu.Lock()
		if m.down {
			m.mu.Unlock()
			return lifecycle.ConnectionError("config", "watch", errMemoryDown)
		}
		if next < m.compacted {
			m.mu.Unlock()
			return lifecycle.ConnectionError("config", "watch", ErrCompacted)
		}
		var batch []Document
		for _, d := range m.log {
			if d.Revision > next && slices.Contains(keys, d.Key) {
				batch = append(batch, d)
			}
		}
		if len(m.log) > 0 {
			next = max(next, m.log[len(m.log)-1].Revision)
		}
		changed := m.changed
		m.mu.Unlock()
		for _, d := range batch {
			fn(d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
