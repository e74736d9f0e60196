package mq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/gochat/im-infra/lifecycle"
)

// Admin creates and describes topics and reads consumer group lag, over
// the Client's connection.
type Admin struct{ c *Client }

// Admin returns the Client's admin API.
func (c *Client) Admin() *Admin { return &Admin{c: c} }

// TopicInfo describes a topic.
type TopicInfo struct {
	Name              string
	Internal          bool
	ReplicationFactor int
	Partitions        []PartitionInfo
}

// PartitionInfo is one partition's leader and replicas (broker node IDs).
type PartitionInfo struct {
	Partition int32
	Leader    int32
	Replicas  []int32
	ISR       []int32
}

// GroupLag is how far a consumer group is behind, per partition.
type GroupLag struct {
	Group string
	// State is the group's state: Stable, PreparingRebalance,
	// CompletingRebalance, Empty or Dead.
	State string
	// Total sums the lag of every partition.
	Total      int64
	Partitions []PartitionLag
}

// PartitionLag is one partition of a group's lag. Committed is -1 when the
// group has not committed an offset for it; Lag then counts from the log
// start (where a group starting at "earliest" begins). Lag is -1 when the
// offsets could not be read.
type PartitionLag struct {
	Topic     string
	Partition int32
	Committed int64
	End       int64
	Lag       int64
	// Member is the ID of the member that owns the partition, if any.
	Member string
}

// fresh makes kadm send its metadata request instead of answering from
// franz-go's metadata cache (up to 5s old), which would hide a topic just
// created or a broker just lost. Asking for authorized operations is what
// bypasses the cache.
func fresh(ctx context.Context) context.Context { return kadm.WithAuthorizedOps(ctx) }

func (c *Client) admin() *kadm.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateStarted {
		return nil
	}
	return c.adm
}

func (a *Admin) client(op string) (*kadm.Client, error) {
	if adm := a.c.admin(); adm != nil {
		return adm, nil
	}
	_, err := a.c.producerClient()
	return nil, lifecycle.WrapError(lifecycle.TypeInternal, ModuleName, op, err, "client not usable")
}

// Raw returns franz-go's admin client (nil before the Client starts).
func (a *Admin) Raw() *kadm.Client { return a.c.admin() }

// CreateTopics creates the topics that do not exist; existing ones are
// left unchanged. It is what Start does with the configured topics.
func (a *Admin) CreateTopics(ctx context.Context, topics ...TopicConfig) error {
	for i, t := range topics {
		if err := t.validate(fmt.Sprintf("topics[%d]", i)); err != nil {
			return err
		}
	}
	adm, err := a.client("create topics")
	if err != nil {
		return err
	}
	return a.c.createTopics(ctx, adm, topics)
}

// ListTopics returns every topic except Kafka's internal ones, by name.
func (a *Admin) ListTopics(ctx context.Context) ([]TopicInfo, error) {
	adm, err := a.client("list topics")
	if err != nil {
		return nil, err
	}
	details, err := adm.ListTopics(fresh(ctx))
	if err != nil {
		return nil, lifecycle.ConnectionError(ModuleName, "list topics", err)
	}
	return topicInfos(details), nil
}

// DescribeTopics returns the named topics. A topic that does not exist is
// a CONFIG error naming it.
func (a *Admin) DescribeTopics(ctx context.Context, names ...string) ([]TopicInfo, error) {
	adm, err := a.client("describe topics")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, nil
	}
	details, err := adm.ListTopics(fresh(ctx), names...)
	if err != nil {
		return nil, lifecycle.ConnectionError(ModuleName, "describe topics", err)
	}
	var missing []string
	for _, n := range names {
		if d, ok := details[n]; !ok || d.Err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, &lifecycle.InfraError{Type: lifecycle.TypeConfig, Component: ModuleName, Op: "describe topics", Field: "topic",
			Message: fmt.Sprintf("no such topic: %s", strings.Join(missing, ", "))}
	}
	return topicInfos(details), nil
}

func topicInfos(details kadm.TopicDetails) []TopicInfo {
	out := make([]TopicInfo, 0, len(details))
	for _, d := range details.Sorted() {
		if d.IsInternal || d.Err != nil {
			continue
		}
		ti := TopicInfo{Name: d.Topic, Internal: d.IsInternal, ReplicationFactor: d.Partitions.NumReplicas()}
		for _, p := range d.Partitions.Sorted() {
			ti.Partitions = append(ti.Partitions, PartitionInfo{
				Partition: p.Partition, Leader: p.Leader,
				Replicas: slices.Clone(p.Replicas), ISR: slices.Clone(p.ISR),
			})
		}
		out = append(out, ti)
	}
	return out
}

// Lag describes group and returns its committed offsets against each
// partition's end offset (kadm's lag calculation).
func (a *Admin) Lag(ctx context.Context, group string) (GroupLag, error) {
	adm, err := a.client("lag")
	if err != nil {
		return GroupLag{}, err
	}
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return GroupLag{}, lifecycle.ConnectionError(ModuleName, "lag", err)
	}
	l, ok := lags[group]
	if !ok {
		return GroupLag{}, lifecycle.InternalError(ModuleName, "lag", "no answer for group "+group, nil)
	}
	if err := l.Error(); err != nil {
		typ := lifecycle.TypeConnection
		if errors.Is(err, context.DeadlineExceeded) {
			typ = lifecycle.TypeTimeout
		}
		return GroupLag{}, lifecycle.WrapError(typ, ModuleName, "lag", err, fmt.Sprintf("group %q", group))
	}
	out := GroupLag{Group: group, State: l.State}
	for _, pl := range l.Lag.Sorted() {
		p := PartitionLag{Topic: pl.Topic, Partition: pl.Partition, Committed: pl.Commit.At, End: pl.End.Offset, Lag: pl.Lag}
		if pl.Member != nil {
			p.Member = pl.Member.MemberID
		}
		if pl.Commit.At < 0 {
			p.Committed = -1
		}
		if p.Lag > 0 {
			out.Total += p.Lag
		}
		out.Partitions = append(out.Partitions, p)
	}
	return out, nil
}
