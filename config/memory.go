package config

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/gochat/im-infra/lifecycle"
)

// MemorySource is an in-process Source for tests and examples. It keeps every
// change, so a Watch from any revision replays what came after it, and it
// can pretend to be down to exercise the degraded path.
type MemorySource struct {
	mu      sync.Mutex
	rev     int64
	data    map[string]Document
	log     []Document    // every change in revision order
	changed chan struct{} // closed and replaced on each change
	down    bool
}

// NewMemorySource returns an empty, reachable source.
func NewMemorySource() *MemorySource {
	return &MemorySource{data: map[string]Document{}, changed: make(chan struct{})}
}

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
	m.down = down
	m.notifyLocked()
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
	docs := make([]Document, len(keys))
	for i, k := range keys {
		if d, ok := m.data[k]; ok {
			docs[i] = d
		} else {
			docs[i] = Document{Key: k}
		}
	}
	return docs, m.rev, ctx.Err()
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
