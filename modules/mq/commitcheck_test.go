package mq_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/modules/mq"
)

// commitCheck watches, at the broker, every OffsetCommit a group makes
// and, in the consumers' logs, every assignment and revocation, in one
// order. It finds two kinds of violation:
//
//   - an offset committed beyond what the handlers had handled (a record
//     below it was never handled): at-least-once broken;
//   - a commit by a member for a partition after that member logged the
//     partition revoked, and before it was assigned to it again.
type commitCheck struct {
	group  string
	ledger *ledger

	mu         sync.Mutex
	topicIDs   map[[16]byte]string    // newer OffsetCommit versions name topics by ID
	owned      map[string]map[tp]bool // member -> partitions it owns
	revoked    map[string]map[tp]bool // member -> partitions revoked from it since
	commits    int
	violations []string
}

func newCommitCheck(group string, l *ledger) *commitCheck {
	return &commitCheck{group: group, ledger: l, topicIDs: map[[16]byte]string{}, owned: map[string]map[tp]bool{}, revoked: map[string]map[tp]bool{}}
}

// watch installs the broker-side observer on cluster. It observes and
// never answers, so the request proceeds as usual.
func (cc *commitCheck) watch(cluster *kfake.Cluster) {
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetCommitRequest)
		if r.Group != cc.group {
			return nil, nil, false
		}
		cc.mu.Lock()
		defer cc.mu.Unlock()
		cc.commits++
		for _, t := range r.Topics {
			topic := t.Topic
			if topic == "" {
				topic = cc.topicIDs[t.TopicID]
			}
			for _, p := range t.Partitions {
				k := tp{topic, p.Partition}
				if prefix := cc.ledger.handledPrefix(topic, p.Partition); p.Offset > prefix {
					cc.violations = append(cc.violations, fmt.Sprintf("member %s committed %s/%d at %d, but only offsets below %d were handled",
						r.MemberID, topic, p.Partition, p.Offset, prefix))
				}
				if cc.revoked[r.MemberID][k] {
					cc.violations = append(cc.violations, fmt.Sprintf("member %s committed %s/%d at %d after it was revoked",
						r.MemberID, topic, p.Partition, p.Offset))
				}
			}
		}
		return nil, nil, false
	})
}

// knowTopics resolves the IDs of topics for the check.
func (cc *commitCheck) knowTopics(t testing.TB, c *mq.Client, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details, err := c.Admin().Raw().ListTopics(kadm.WithAuthorizedOps(ctx), topics...)
	require.NoError(t, err)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, d := range details {
		require.NoError(t, d.Err, "%+v", details)
		cc.topicIDs[d.ID] = d.Topic
	}
}

// core is a zap core that feeds the consumers' assignment and revocation
// log lines into the same order as the commits.
func (cc *commitCheck) core() zapcore.Core { return &eventCore{cc: cc} }

func (cc *commitCheck) event(msg string, member string, parts map[string][]int32) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, m := range []map[string]map[tp]bool{cc.owned, cc.revoked} {
		if m[member] == nil {
			m[member] = map[tp]bool{}
		}
	}
	for topic, ps := range parts {
		for _, p := range ps {
			k := tp{topic, p}
			if strings.Contains(msg, "assigned") {
				cc.owned[member][k] = true
				delete(cc.revoked[member], k)
			} else {
				delete(cc.owned[member], k)
				cc.revoked[member][k] = true
			}
		}
	}
}

func (cc *commitCheck) result() (commits int, violations []string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.commits, append([]string(nil), cc.violations...)
}

type eventCore struct {
	cc     *commitCheck
	fields []zapcore.Field
}

func (c *eventCore) Enabled(l zapcore.Level) bool { return l >= zapcore.InfoLevel }

func (c *eventCore) With(fs []zapcore.Field) zapcore.Core {
	return &eventCore{cc: c.cc, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *eventCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) && (strings.HasPrefix(e.Message, "mq: partitions assigned") ||
		strings.HasPrefix(e.Message, "mq: partitions revoked") ||
		strings.HasPrefix(e.Message, "mq: commit on revoke failed") ||
		strings.HasPrefix(e.Message, "mq: partitions lost")) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *eventCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	var member string
	var parts map[string][]int32
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fs...) {
		switch f.Key {
		case "member_id":
			member = f.String
		case "partitions":
			parts, _ = f.Interface.(map[string][]int32)
		}
	}
	c.cc.event(e.Message, member, parts)
	return nil
}

func (c *eventCore) Sync() error { return nil }

// loggerWith tees the test logger with the check's core.
func loggerWith(base *zap.Logger, core zapcore.Core) *zap.Logger {
	return base.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, core) }))
}
