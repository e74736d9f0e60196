package mq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/lifecycle"
)

// Handler handles one record. Returning nil lets its offset be committed;
// an error makes the record be retried, and after the last retry sent to
// the dead-letter topic. ctx ends when the consumer must give the
// partition up now (stop timeout, lost partitions); it carries the
// sender's trace.
//
// Records of one partition reach the handler one at a time, in order;
// different partitions are handled concurrently.
type Handler func(ctx context.Context, m *Message) error

// Headers set on a dead-lettered record, beside the original headers.
const (
	HeaderDLQError     = "dlq.error"     // the last handler error, at most 1 KiB
	HeaderDLQAttempts  = "dlq.attempts"  // handler calls made
	HeaderDLQTopic     = "dlq.topic"     // original topic
	HeaderDLQPartition = "dlq.partition" // original partition
	HeaderDLQOffset    = "dlq.offset"    // original offset
	HeaderDLQGroup     = "dlq.group"     // group that gave up on it
	maxDLQErrorLen     = 1 << 10
)

// Consumer is one member of a consumer group, made by Client.Subscribe.
//
// Delivery is at-least-once: a record's offset is committed only after its
// handler returned nil or it went to the dead-letter topic. Offsets are
// committed every consumer.commitInterval, when partitions are revoked
// (before the next owner starts) and on Stop. Lost partitions (the group
// dropped this member) are not committed. After a crash, records handled
// since the last commit are handled again.
type Consumer struct {
	client  *Client
	group   string
	topics  []string
	handler Handler
	log     *zap.Logger
	tracer  *kotel.Tracer

	mu      sync.Mutex
	kcl     *kgo.Client
	sem     chan struct{}   // one slot per partition being handled
	workers map[tp]*worker  // current assignment
	paused  map[string]bool // topics paused by Pause
	running bool
	stopped bool
	stop    chan struct{} // closed by Stop: ends background work
	cancel  context.CancelFunc
	polling chan struct{} // closed when the poll loop returns
	room    chan struct{} // signalled when the backlog shrinks
	bg      sync.WaitGroup
	lastErr time.Time // last fetch error logged
}

type tp struct {
	topic     string
	partition int32
}

// Subscribe adds a member of group that consumes topics with h. It does
// no I/O: the member joins the group in the background once the Client
// has started (at once if it already has). Stop it with Stop or by
// closing the Client.
func (c *Client) Subscribe(group string, topics []string, h Handler) (*Consumer, error) {
	if group == "" {
		return nil, lifecycle.ValidationError(ModuleName, "group", "consumer group name is empty")
	}
	if len(topics) == 0 {
		return nil, lifecycle.ValidationError(ModuleName, "topics", "subscribe to at least one topic")
	}
	for i, t := range topics {
		if err := CheckTopic(t); err != nil {
			return nil, lifecycle.ValidationError(ModuleName, fmt.Sprintf("topics[%d]", i), err.Error())
		}
	}
	if h == nil {
		return nil, lifecycle.ValidationError(ModuleName, "handler", "nil handler")
	}
	s := &Consumer{
		client:  c,
		group:   group,
		topics:  slices.Clone(topics),
		handler: h,
		log:     c.log.With(zap.String("group", group)),
		tracer:  newTracer(c.opts.tracer, group),
		workers: map[tp]*worker{},
		paused:  map[string]bool{},
		stop:    make(chan struct{}),
		polling: make(chan struct{}),
		room:    make(chan struct{}, 1),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return nil, lifecycle.WrapError(lifecycle.TypeInternal, ModuleName, "subscribe", ErrClosed, "client closed")
	}
	c.consumers = append(c.consumers, s)
	if c.state == stateStarted {
		s.start()
	}
	return s, nil
}

// Group is the consumer group's name.
func (s *Consumer) Group() string { return s.group }

// Raw returns the member's franz-go client (nil before it starts).
func (s *Consumer) Raw() *kgo.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kcl
}

// start makes the group client and the poll loop; called with the
// Client's mu held, once the Client has connected.
func (s *Consumer) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.stopped {
		return
	}
	cfg := s.client.built
	kcl, err := s.newGroupClient(cfg)
	if err != nil {
		// The same options already made the producer client.
		s.log.Error("mq: consumer not started", zap.Error(err))
		return
	}
	s.kcl, s.running = kcl, true
	s.sem = make(chan struct{}, cfg.Consumer.Concurrency)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.applyPausesLocked()
	s.bg.Add(1)
	go s.ensureDeadLetterTopics()
	go s.poll(ctx)
	s.log.Info("mq: consumer started", zap.Strings("topics", s.topics),
		zap.Int("concurrency", cfg.Consumer.Concurrency))
}

func (s *Consumer) newGroupClient(cfg Config) (*kgo.Client, error) {
	opts, err := s.client.commonOptions(cfg, s.tracer)
	if err != nil {
		return nil, err
	}
	cc := cfg.Consumer
	start := kgo.NewOffset().AtStart()
	if cc.StartOffset == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	opts = append(opts,
		kgo.ConsumerGroup(s.group),
		kgo.ConsumeTopics(s.topics...),
		kgo.ConsumeResetOffset(start),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(cc.CommitInterval.Std()),
		// Rebalance callbacks never run between a poll and the dispatch
		// of its records, so no record of a revoked partition can reach
		// a worker of the next assignment.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
		kgo.SessionTimeout(cc.SessionTimeout.Std()),
		kgo.RebalanceTimeout(cc.RebalanceTimeout.Std()),
		kgo.HeartbeatInterval(cc.HeartbeatInterval.Std()),
		kgo.FetchMaxBytes(int32(cc.FetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(int32(cc.FetchMaxPartitionBytes)),
		kgo.FetchMaxWait(cc.FetchMaxWait.Std()),
	)
	return kgo.NewClient(opts...)
}

// ensureDeadLetterTopics creates "<topic>.dlq" for each subscribed topic
// when dead-lettering is on, so that the first dead letter does not wait
// for it. Failure is logged: dead-lettering creates the topic again when
// a send finds it missing.
func (s *Consumer) ensureDeadLetterTopics() {
	defer s.bg.Done()
	if !s.client.cfg.Load().Consumer.DeadLetter {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.createDeadLetterTopics(ctx, s.topics...); err != nil {
		s.log.Warn("mq: dead-letter topics not created", zap.Strings("topics", s.topics), zap.Error(err))
	}
}

// createDeadLetterTopics creates the dead-letter topics of topics, with
// their partition counts, if missing.
func (s *Consumer) createDeadLetterTopics(ctx context.Context, topics ...string) error {
	adm := s.client.admin()
	if adm == nil {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.client.cfg.Load().ConnectTimeout.Std())
	defer cancel()
	details, err := adm.ListTopics(fresh(ctx), topics...)
	if err != nil {
		return err
	}
	dlq := make([]TopicConfig, 0, len(topics))
	for _, t := range topics {
		parts := 0
		if d, ok := details[t]; ok && d.Err == nil {
			parts = len(d.Partitions)
		}
		dlq = append(dlq, TopicConfig{Name: DeadLetterTopic(t), Partitions: parts})
	}
	return s.client.createTopics(ctx, adm, dlq)
}

// poll fetches and hands each partition's records to its worker. It
// polls only while fewer than consumer.bufferedRecords records wait for
// handlers, so franz-go keeps the rest in its fetch buffer instead of
// fetching more; handing records over only appends to queues, so
// AllowRebalance follows each poll at once.
func (s *Consumer) poll(ctx context.Context) {
	defer close(s.polling)
	recheck := time.NewTicker(100 * time.Millisecond)
	defer recheck.Stop()
	for {
		cfg := &s.client.cfg.Load().Consumer
		room := cfg.BufferedRecords - s.backlog()
		if room <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.room:
			case <-recheck.C: // the budget can change live
			}
			continue
		}
		fs := s.kcl.PollRecords(ctx, min(cfg.MaxPollRecords, room))
		if fs.IsClientClosed() || ctx.Err() != nil {
			s.kcl.AllowRebalance()
			return
		}
		fs.EachError(s.fetchError)
		s.mu.Lock()
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			w := s.workers[tp{p.Topic, p.Partition}]
			if w == nil {
				return // not ours (cannot happen while rebalances wait for AllowRebalance)
			}
			w.highWatermark(p.HighWatermark)
			if len(p.Records) > 0 {
				w.push(p.Records)
			}
		})
		s.mu.Unlock()
		s.kcl.AllowRebalance()
	}
}

// backlog is the records waiting for (or in) handlers of partitions that
// are being fetched. It also flushes the workers' marks.
func (s *Consumer) backlog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, w := range s.workers {
		w.flushMarks()
		if !w.retrying.Load() {
			n += int(w.pending.Load())
		}
	}
	return n
}

// wakePoll tells a waiting poll loop that the backlog shrank.
func (s *Consumer) wakePoll() {
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// fetchError logs fetch errors at most every 10s: franz-go retries the
// retryable ones itself, and a persistent one would repeat every fetch.
func (s *Consumer) fetchError(topic string, partition int32, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.mu.Lock()
	due := time.Since(s.lastErr) > 10*time.Second
	if due {
		s.lastErr = time.Now()
	}
	s.mu.Unlock()
	switch {
	case !due:
	case topic == "": // franz-go reports group errors as fetch errors without a partition
		s.log.Warn("mq: group error; rejoining", zap.Error(err))
	default:
		s.log.Warn("mq: fetch failed", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
	}
}

func (s *Consumer) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	for topic, parts := range assigned {
		for _, p := range parts {
			key := tp{topic, p}
			if s.workers[key] != nil {
				continue
			}
			w := newWorker(s, key)
			s.workers[key] = w
			go w.run()
		}
	}
	s.mu.Unlock()
	member, gen := cl.GroupMetadata()
	s.log.Info("mq: partitions assigned", zap.String("member_id", member), zap.Int32("generation", gen),
		zap.Any("partitions", assigned))
}

// onRevoked runs before the group moves partitions elsewhere: their
// workers finish the record in hand (half the rebalance timeout, then
// their ctx is cancelled), stop marking, and what they handled is
// committed before the partitions are released.
func (s *Consumer) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	cfg := s.client.cfg.Load()
	rebalance := s.client.built.Consumer.RebalanceTimeout.Std()
	ws := s.detach(revoked)
	began := time.Now()
	s.stopWorkers(ws, began.Add(rebalance/2), min(time.Second, rebalance/10), false)
	cctx, cancel := context.WithTimeout(ctx, max(cfg.ConnectTimeout.Std(), rebalance/4))
	defer cancel()
	err := cl.CommitMarkedOffsets(cctx)
	member, gen := cl.GroupMetadata()
	if err != nil {
		s.log.Warn("mq: commit on revoke failed; the next owner handles those records again",
			zap.String("member_id", member), zap.Int32("generation", gen), zap.Any("partitions", revoked), zap.Error(err))
		return
	}
	if len(ws) > 0 || len(revoked) > 0 {
		s.log.Info("mq: partitions revoked", zap.String("member_id", member), zap.Int32("generation", gen),
			zap.Any("partitions", revoked), zap.Duration("elapsed", time.Since(began)))
	}
}

// onLost runs when the group dropped this member (session expired,
// fenced): another member may already own the partitions, so nothing is
// committed; handlers are cancelled at once and awaited, so that the
// partition is never handled twice at the same time here.
func (s *Consumer) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	rebalance := s.client.built.Consumer.RebalanceTimeout.Std()
	ws := s.detach(lost)
	for _, w := range ws {
		w.fence() // before they stop: nothing of a lost partition is marked
	}
	s.stopWorkers(ws, time.Now(), rebalance/2, true)
	member, gen := cl.GroupMetadata()
	s.log.Warn("mq: partitions lost; their handled but uncommitted records will be handled again",
		zap.String("member_id", member), zap.Int32("generation", gen), zap.Any("partitions", lost))
}

// detach removes the workers of parts from the assignment.
func (s *Consumer) detach(parts map[string][]int32) []*worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ws []*worker
	for topic, ps := range parts {
		for _, p := range ps {
			if w := s.workers[tp{topic, p}]; w != nil {
				ws = append(ws, w)
				delete(s.workers, tp{topic, p})
			}
		}
	}
	return ws
}

// detachAll removes every worker from the assignment.
func (s *Consumer) detachAll() []*worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := make([]*worker, 0, len(s.workers))
	for k, w := range s.workers {
		ws = append(ws, w)
		delete(s.workers, k)
	}
	return ws
}

// stopWorkers asks ws to stop after the record in hand and waits until
// soft; then it cancels their handlers' ctx and waits up to grace more.
// What they handled is marked (unless the partitions are lost), then every
// worker is fenced: a handler that outlives this can no longer mark its
// record for commit.
func (s *Consumer) stopWorkers(ws []*worker, soft time.Time, grace time.Duration, lost bool) {
	if len(ws) == 0 {
		return
	}
	for _, w := range ws {
		w.requestStop()
	}
	if !waitAll(ws, time.Until(soft)) {
		for _, w := range ws {
			w.cancel()
		}
		if !waitAll(ws, grace) {
			var stuck []string
			for _, w := range ws {
				select {
				case <-w.done:
				default:
					stuck = append(stuck, w.key.topic+"/"+strconv.Itoa(int(w.key.partition)))
				}
			}
			s.log.Warn("mq: handlers did not return after their ctx was cancelled; their results will not be committed",
				zap.Strings("partitions", stuck))
		}
	}
	for _, w := range ws {
		if !lost {
			w.flushMarks()
		}
		w.fence()
	}
}

// waitAll waits up to d for every worker to finish.
func waitAll(ws []*worker, d time.Duration) bool {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	for _, w := range ws {
		select {
		case <-w.done:
		case <-t.C:
			return false
		}
	}
	return true
}

// Pause stops fetching topics (all subscribed topics when none are given)
// until Resume. Records already fetched are still handled.
func (s *Consumer) Pause(topics ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(topics) == 0 {
		topics = s.topics
	}
	for _, t := range topics {
		s.paused[t] = true
	}
	s.applyPausesLocked()
	s.log.Info("mq: topics paused", zap.Strings("topics", topics))
}

// Resume undoes Pause. A topic listed in consumer.pausedTopics stays
// paused until it is removed from the config.
func (s *Consumer) Resume(topics ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(topics) == 0 {
		topics = s.topics
	}
	for _, t := range topics {
		delete(s.paused, t)
	}
	s.applyPausesLocked()
	s.log.Info("mq: topics resumed", zap.Strings("topics", topics))
}

// Paused lists the subscribed topics that are not being fetched.
func (s *Consumer) Paused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pausedTopicsLocked()
}

func (s *Consumer) applyPauses() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyPausesLocked()
}

func (s *Consumer) pausedTopicsLocked() []string {
	byConfig := s.client.cfg.Load().Consumer.PausedTopics
	var out []string
	for _, t := range s.topics {
		if s.paused[t] || slices.Contains(byConfig, t) {
			out = append(out, t)
		}
	}
	return out
}

// applyPausesLocked makes the client's paused topics what Pause and
// consumer.pausedTopics ask for.
func (s *Consumer) applyPausesLocked() {
	if s.kcl == nil {
		return
	}
	want := s.pausedTopicsLocked()
	var resume []string
	for _, t := range s.topics {
		if !slices.Contains(want, t) {
			resume = append(resume, t)
		}
	}
	if len(want) > 0 {
		s.kcl.PauseFetchTopics(want...)
	}
	if len(resume) > 0 {
		s.kcl.ResumeFetchTopics(resume...)
	}
}

// Stop leaves the group cleanly within ctx: it stops fetching, lets the
// handlers in flight finish (their ctx is cancelled when ctx is about to
// end), commits what was handled and leaves the group, so its partitions
// move at once rather than after the session timeout. Records fetched but
// not handled stay uncommitted for the next owner.
func (s *Consumer) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	close(s.stop)
	running, kcl := s.running, s.kcl
	s.mu.Unlock()
	defer s.client.removeConsumer(s)
	if !running {
		return nil
	}
	began := time.Now()
	s.cancel()
	select {
	case <-s.polling:
	case <-ctx.Done():
	}
	kcl.PauseFetchTopics(s.topics...)

	soft, grace := stopBudget(ctx, s.client.built.Consumer.RebalanceTimeout.Std())
	ws := s.detachAll()
	s.stopWorkers(ws, soft, grace, false)
	var errs []error
	if err := kcl.CommitMarkedOffsets(ctx); err != nil {
		errs = append(errs, lifecycle.WrapError(lifecycle.TypeConnection, ModuleName, "commit", err,
			fmt.Sprintf("group %q: final commit failed; handled records will be handled again", s.group)))
	}
	committed := kcl.CommittedOffsets()
	if err := kcl.LeaveGroupContext(ctx); err != nil {
		errs = append(errs, lifecycle.WrapError(lifecycle.TypeTimeout, ModuleName, "leave group", err,
			fmt.Sprintf("group %q: leave not confirmed; partitions move after the session timeout", s.group)))
	}
	kcl.Close()
	s.bg.Wait()
	err := errors.Join(errs...)
	s.log.Info("mq: consumer stopped", zap.Strings("topics", s.topics), zap.Int("partitions", len(ws)),
		zap.Int("committed_partitions", countPartitions(committed)), zap.Duration("elapsed", time.Since(began)), zap.Error(err))
	return s.client.report(ctx, err)
}

func countPartitions[V any](m map[string]map[int32]V) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

// stopBudget splits a stop ctx: handlers may run until soft; after their
// ctx is cancelled they get grace; the rest is for commit and leave.
func stopBudget(ctx context.Context, rebalance time.Duration) (soft time.Time, grace time.Duration) {
	now := time.Now()
	dl, ok := ctx.Deadline()
	if !ok {
		return now.Add(rebalance / 2), time.Second
	}
	remaining := dl.Sub(now)
	reserve := min(remaining/4, 2*time.Second)
	return dl.Add(-reserve), reserve / 2
}

// lag sums, per topic, the records between the committed offset and the
// high watermark of the partitions this member owns. A partition with no
// commit yet counts from the first offset fetched for it.
func (s *Consumer) lag() map[string]int64 {
	type pos struct{ hw, first int64 }
	s.mu.Lock()
	kcl := s.kcl
	owned := make(map[tp]pos, len(s.workers))
	for k, w := range s.workers {
		if h := w.hw.Load(); h >= 0 {
			owned[k] = pos{h, w.first.Load()}
		}
	}
	s.mu.Unlock()
	if kcl == nil || len(owned) == 0 {
		return nil
	}
	committed := kcl.CommittedOffsets()
	out := map[string]int64{}
	for k, p := range owned {
		base := p.first
		if c, ok := committed[k.topic][k.partition]; ok && c.Offset >= 0 {
			base = c.Offset
		}
		if base >= 0 {
			out[k.topic] += max(p.hw-base, 0)
		}
	}
	return out
}

// worker handles one assigned partition's records in order.
type worker struct {
	s     *Consumer
	key   tp
	attrs metric.MeasurementOption

	mu       sync.Mutex
	queue    []*kgo.Record
	fetchOff bool // this partition's fetching is paused while a record is retried
	wake     chan struct{}
	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	ctx    context.Context // handlers' ctx
	cancel context.CancelFunc

	markMu sync.Mutex
	fenced bool
	last   atomic.Pointer[kgo.Record] // handled, not yet marked

	hw       atomic.Int64 // high watermark of the last fetch, -1 before one
	first    atomic.Int64 // offset of the first record fetched, -1 before one
	pending  atomic.Int64 // records pushed and not yet finished
	retrying atomic.Bool  // a failed record is being retried
}

func newWorker(s *Consumer, key tp) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{
		s: s, key: key, attrs: consumerAttrs(s.group, key.topic),
		wake: make(chan struct{}, 1), stopping: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	w.hw.Store(-1)
	w.first.Store(-1)
	return w
}

func (w *worker) highWatermark(hw int64) { w.hw.Store(hw) }

// push queues records; called by the poll loop with s.mu held.
func (w *worker) push(rs []*kgo.Record) {
	w.first.CompareAndSwap(-1, rs[0].Offset)
	w.pending.Add(int64(len(rs)))
	w.mu.Lock()
	w.queue = append(w.queue, rs...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// next takes every queued record, waiting for some; nil means stop.
func (w *worker) next() []*kgo.Record {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			batch := w.queue
			w.queue = nil
			w.mu.Unlock()
			return batch
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.stopping:
			return nil
		}
	}
}

// retryStarted stops fetching the partition while a failed record waits
// for its retries: what is already queued stays, and the partition no
// longer counts against the subscription's buffer.
func (w *worker) retryStarted() {
	if w.retrying.Swap(true) {
		return
	}
	w.mu.Lock()
	if !w.fetchOff {
		w.fetchOff = true
		w.s.kcl.PauseFetchPartitions(map[string][]int32{w.key.topic: {w.key.partition}})
	}
	w.mu.Unlock()
	w.s.wakePoll()
}

// retryEnded fetches the partition again.
func (w *worker) retryEnded() {
	if !w.retrying.Swap(false) {
		return
	}
	w.resumeFetch()
}

func (w *worker) resumeFetch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fetchOff {
		w.fetchOff = false
		w.s.kcl.ResumeFetchPartitions(map[string][]int32{w.key.topic: {w.key.partition}})
	}
}

func (w *worker) requestStop() { w.stopOnce.Do(func() { close(w.stopping) }) }

func (w *worker) stopRequested() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

// fence ends marking and the worker's fetch pause: the partition now
// belongs to the next assignment.
func (w *worker) fence() {
	w.markMu.Lock()
	w.fenced = true
	w.markMu.Unlock()
	w.cancel()
	w.resumeFetch()
	w.s.wakePoll()
}

// handled notes r as done; flushMarks makes it committable. Marking once
// per slice of records rather than per record keeps the commit lock off
// the hot path. The worker flushes before it waits, retries or stops, the
// poll loop flushes every worker on each turn and stopWorkers before it
// fences: a handler that hangs cannot hold back the marks of the records
// handled before it.
func (w *worker) handled(r *kgo.Record) { w.last.Store(r) }

// flushMarks marks the last handled record for commit, unless the
// partition was taken away. Any goroutine may call it; marks never move
// back, so the order of concurrent flushes does not matter.
func (w *worker) flushMarks() {
	r := w.last.Swap(nil)
	if r == nil {
		return
	}
	w.markMu.Lock()
	defer w.markMu.Unlock()
	if !w.fenced {
		w.s.kcl.MarkCommitRecords(r)
	}
}

// markEvery bounds the records handled between marks (and between giving
// the concurrency slot to another partition).
const markEvery = 64

func (w *worker) run() {
	defer close(w.done)
	for {
		batch := w.next()
		if batch == nil {
			return
		}
		if !w.acquire() {
			return
		}
		for i, r := range batch {
			if w.stopRequested() {
				w.flushMarks()
				w.release()
				return
			}
			ok := w.process(r) // false: stopped, slot released
			w.retryEnded()
			w.pending.Add(-1)
			if !ok {
				w.flushMarks()
				return
			}
			if (i+1)%markEvery == 0 {
				w.flushMarks()
				w.s.wakePoll()
				w.release()
				if !w.acquire() {
					return
				}
			}
		}
		w.flushMarks()
		w.release()
		w.s.wakePoll()
	}
}

// process handles r, holding the worker's concurrency slot, until it
// succeeds or is dead-lettered (true), or until the worker is told to stop
// (false, with the slot released: r stays uncommitted). The slot is given
// up while waiting between retries and while dead-lettering.
func (w *worker) process(r *kgo.Record) bool {
	parent := handlerContext(w.ctx, w.s.tracer, r)
	var (
		err     error
		attempt int
		backoff time.Duration
	)
	for {
		cfg := &w.s.client.cfg.Load().Consumer
		if attempt > cfg.MaxRetries && cfg.DeadLetter {
			break // lowered live while this record waited
		}
		attempt++
		err = w.call(parent, r)
		if err == nil {
			w.handled(r)
			return true
		}
		// A failure while stopping may be the cancelled ctx: leave the
		// record to the next owner rather than dead-letter it.
		if w.stopRequested() {
			w.release()
			return false
		}
		if attempt > cfg.MaxRetries && cfg.DeadLetter {
			break
		}
		w.retryStarted()
		w.s.client.metrics.retried.Add(w.ctx, 1, w.attrs)
		if attempt == cfg.MaxRetries+1 {
			w.s.log.Warn("mq: handler keeps failing and dead-lettering is off; retrying until it succeeds",
				zap.String("topic", r.Topic), zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
		}
		w.flushMarks()
		w.release()
		if !w.sleep(&backoff, cfg) || !w.acquire() {
			return false
		}
	}
	w.flushMarks()
	w.release()
	if !w.deadLetter(r, err, attempt) || !w.acquire() {
		return false
	}
	w.handled(r)
	return true
}

// acquire takes a concurrency slot, unless the worker is told to stop.
func (w *worker) acquire() bool {
	select {
	case w.s.sem <- struct{}{}:
		return true
	case <-w.stopping:
		return false
	}
}

func (w *worker) release() { <-w.s.sem }

// call runs the handler once (in a process span when tracing), turning a
// panic into an error.
func (w *worker) call(parent context.Context, r *kgo.Record) (err error) {
	ctx, end := processSpan(w.s.tracer, parent, r)
	metered := w.s.client.metrics.enabled
	var began time.Time
	if metered { // two clock reads per record are a visible cost
		began = time.Now()
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("mq: handler panicked: %v", p)
			w.s.log.Error("mq: handler panicked", zap.String("topic", r.Topic), zap.Int32("partition", r.Partition),
				zap.Int64("offset", r.Offset), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
		}
		end(err)
		if metered {
			w.s.client.metrics.handled(ctx, w.attrs, time.Since(began), err)
		}
	}()
	return w.s.handler(ctx, r)
}

// sleep waits the next backoff: doubling from retryBackoff up to
// retryBackoffMax, jittered by ±25%.
func (w *worker) sleep(backoff *time.Duration, cfg *ConsumerConfig) bool {
	if *backoff == 0 {
		*backoff = cfg.RetryBackoff.Std()
	} else {
		*backoff = min(*backoff*2, cfg.RetryBackoffMax.Std())
	}
	d := *backoff
	d += time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stopping:
		return false
	}
}

// deadLetter sends r to its dead-letter topic with the failure in headers,
// retrying the send until it works or the worker stops; then r counts as
// handled and its offset is marked.
func (w *worker) deadLetter(r *kgo.Record, cause error, attempts int) bool {
	msg := cause.Error()
	if len(msg) > maxDLQErrorLen {
		msg = msg[:maxDLQErrorLen]
	}
	headers := append(slices.Clip(r.Headers),
		Header{Key: HeaderDLQError, Value: []byte(msg)},
		Header{Key: HeaderDLQAttempts, Value: strconv.AppendInt(nil, int64(attempts), 10)},
		Header{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
		Header{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		Header{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
		Header{Key: HeaderDLQGroup, Value: []byte(w.s.group)},
	)
	var backoff time.Duration
	for {
		dlq := &Message{Topic: DeadLetterTopic(r.Topic), Key: r.Key, Value: r.Value, Headers: headers, Timestamp: r.Timestamp}
		err := w.s.client.SendSync(w.ctx, dlq)
		if err == nil {
			w.s.client.metrics.deadLettered.Add(w.ctx, 1, w.attrs)
			w.s.log.Warn("mq: record dead-lettered", zap.String("topic", r.Topic), zap.Int32("partition", r.Partition),
				zap.Int64("offset", r.Offset), zap.Int("attempts", attempts), zap.String("dlq", dlq.Topic), zap.Error(cause))
			return true
		}
		if errors.Is(err, ErrClosed) || w.stopRequested() {
			return false
		}
		w.retryStarted()
		w.s.log.Warn("mq: dead-letter send failed; retrying", zap.String("dlq", dlq.Topic), zap.Error(err))
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			if err := w.s.createDeadLetterTopics(w.ctx, r.Topic); err != nil {
				w.s.log.Warn("mq: dead-letter topic not created", zap.String("dlq", dlq.Topic), zap.Error(err))
			}
		}
		if !w.sleep(&backoff, &w.s.client.cfg.Load().Consumer) {
			return false
		}
	}
}
