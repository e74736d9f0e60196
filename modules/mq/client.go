package mq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kotel"
	"github.com/twmb/franz-go/plugin/kzap"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gochat/im-infra/lifecycle"
)

// ErrClosed is the cause of errors from a Client that has been closed, or
// whose Close failed a record that was still waiting to be sent.
var ErrClosed = errors.New("mq: client closed")

// ErrNotStarted is the cause of errors from a Client whose fx app has not
// started yet.
var ErrNotStarted = errors.New("mq: client not started")

const (
	saslPlain    = "PLAIN"
	saslScram256 = "SCRAM-SHA-256"
	saslScram512 = "SCRAM-SHA-512"
)

var acksValues = map[string]kgo.Acks{
	"all":    kgo.AllISRAcks(),
	"leader": kgo.LeaderAck(),
	"none":   kgo.NoAck(),
}

var compressionCodecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

var kgoLogLevels = map[string]kgo.LogLevel{
	"none":  kgo.LogLevelNone,
	"error": kgo.LogLevelError,
	"warn":  kgo.LogLevelWarn,
	"info":  kgo.LogLevelInfo,
	"debug": kgo.LogLevelDebug,
}

// Option configures New.
type Option func(*options)

type options struct {
	log    *zap.Logger
	meter  metric.MeterProvider
	tracer trace.TracerProvider
	errs   func(context.Context, error) error
}

// WithLogger sends the module's logs, and franz-go's at or above the
// configured logLevel, to l. Default: a no-op logger.
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.log = l } }

// WithMeterProvider records the module's metrics (see README.md) through
// mp. Default: no metrics.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meter = mp }
}

// WithTracerProvider makes publish, receive and process spans through tp.
// W3C trace context travels in record headers with or without it; without
// it no span is made.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}

// withErrorHandler passes every InfraError the client reports (failed
// start, undelivered record) to h; the fx module uses the app's
// lifecycle.ErrorHandler so they are counted.
func withErrorHandler(h func(context.Context, error) error) Option {
	return func(o *options) { o.errs = h }
}

type clientState int

const (
	stateNew clientState = iota
	stateStarting
	stateStarted
	stateClosed
)

// Client is one connection to a Kafka cluster: a producer (Send,
// SendSync, Flush), consumer groups (Subscribe) and administration
// (Admin). It is safe for concurrent use.
//
// A Client made by New is connected; one made by the fx module connects
// when the app starts, and Subscribe calls made before that start their
// consumers then.
type Client struct {
	log     *zap.Logger
	opts    options
	metrics *metrics
	tracer  *kotel.Tracer
	kgoLvl  atomic.Int32
	lastErr connectErrors

	cfg  atomic.Pointer[Config]     // the live config; restart-only fields keep their start values in built
	prod atomic.Pointer[kgo.Client] // the producer while started: Send reads it without a lock
	// maxRecord is producer.maxRecordBytes as the producer was built with
	// it (the batch limit follows it), for Send's check.
	maxRecord atomic.Int64
	goodTopic atomic.Pointer[string] // the last topic name Send checked and found legal
	// The promises Send shares between records (see newPromises).
	callbackPromise, countPromise func(*kgo.Record, error)

	mu        sync.Mutex
	state     clientState
	built     Config // the config the clients were made with
	kcl       *kgo.Client
	adm       *kadm.Client
	consumers []*Consumer
	closed    chan struct{} // closed by Close, ends background work
	bg        sync.WaitGroup
}

// New connects to the cluster described by cfg: it checks cfg, asks the
// brokers for metadata (bounded by cfg.ConnectTimeout and ctx) and creates
// the configured topics that are missing. It fails with a VALIDATION,
// CONFIG or CONNECTION *lifecycle.InfraError.
func New(ctx context.Context, cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := newClient(cfg, opts...)
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// newClient builds an unstarted Client around cfg; it does no I/O.
func newClient(cfg Config, opts ...Option) *Client {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = zap.NewNop()
	}
	c := &Client{
		log:    o.log,
		opts:   o,
		closed: make(chan struct{}),
	}
	c.metrics = newMetrics(o.meter, c)
	c.newPromises()
	c.tracer = newTracer(o.tracer, "")
	c.cfg.Store(&cfg)
	c.kgoLvl.Store(int32(kgoLogLevels[cfg.LogLevel]))
	return c
}

// Start connects with the config the Client holds (see New). The fx module
// calls it from its OnStart hook.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	switch c.state {
	case stateStarting, stateStarted:
		c.mu.Unlock()
		return nil
	case stateClosed:
		c.mu.Unlock()
		return lifecycle.WrapError(lifecycle.TypeInternal, ModuleName, "start", ErrClosed, "cannot start a closed client")
	}
	c.state = stateStarting
	c.mu.Unlock()

	kcl, meta, err := c.connect(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.state == stateClosed {
		kcl.Close()
		err = lifecycle.WrapError(lifecycle.TypeInternal, ModuleName, "start", ErrClosed, "closed while starting")
	}
	if err != nil {
		if c.state == stateStarting {
			c.state = stateNew
		}
		return c.report(ctx, err)
	}
	c.kcl, c.adm, c.state = kcl, kadm.NewClient(kcl), stateStarted
	c.prod.Store(kcl)
	if err := c.metrics.observe(); err != nil {
		c.log.Warn("mq: lag gauge not registered", zap.Error(err))
	}
	for _, s := range c.consumers {
		s.start()
	}
	c.log.Info("mq: connected to kafka",
		zap.Strings("brokers", c.built.Brokers),
		zap.Int("broker_count", len(meta.Brokers)),
		zap.String("cluster", meta.Cluster),
		zap.Int("topics_defined", len(c.built.Topics)),
		zap.Int("consumers", len(c.consumers)),
		zap.Duration("elapsed", meta.elapsed))
	return nil
}

type probeResult struct {
	kadm.Metadata
	elapsed time.Duration
}

// connect makes the producer client, proves a broker answers and creates
// the configured topics; c.mu is not held, so health checks and Subscribe
// do not wait for it.
func (c *Client) connect(ctx context.Context) (*kgo.Client, probeResult, error) {
	cfg := *c.cfg.Load()
	if err := cfg.Validate(); err != nil {
		return nil, probeResult{}, err
	}
	began := time.Now()
	opts, err := c.producerOptions(cfg)
	if err != nil {
		return nil, probeResult{}, err
	}
	kcl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, probeResult{}, lifecycle.ConfigError(ModuleName, "", "franz-go refused the options", err)
	}
	adm := kadm.NewClient(kcl)
	meta, err := c.probe(ctx, adm, cfg)
	if err != nil {
		kcl.Close()
		return nil, probeResult{}, c.connectError(cfg, err)
	}
	if err := c.createTopics(ctx, adm, cfg.Topics); err != nil {
		kcl.Close()
		return nil, probeResult{}, err
	}
	c.mu.Lock()
	c.built = cfg
	c.maxRecord.Store(int64(cfg.Producer.MaxRecordBytes))
	c.mu.Unlock()
	return kcl, probeResult{meta, time.Since(began)}, nil
}

// probe asks the brokers for cluster metadata, the cheapest request that
// proves a broker is reachable and authenticates us.
func (c *Client) probe(ctx context.Context, adm *kadm.Client, cfg Config) (kadm.Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout.Std())
	defer cancel()
	return adm.BrokerMetadata(fresh(ctx))
}

func isAuthError(err error) bool {
	return errors.Is(err, kerr.SaslAuthenticationFailed) ||
		errors.Is(err, kerr.IllegalSaslState) ||
		errors.Is(err, kerr.UnsupportedSaslMechanism)
}

// closedDuringInit reports a broker that accepted the TCP connection and
// then closed it before answering: with SASL configured, brokers that
// reject the credentials without an error code do that.
func closedDuringInit(err error) bool {
	var first *kgo.ErrFirstReadEOF
	return errors.As(err, &first) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// connectError explains a failed probe: the brokers tried and the dial
// error behind a timeout, or the SASL user and mechanism that were
// refused. Passwords never appear.
func (c *Client) connectError(cfg Config, err error) error {
	dialErr := c.lastErr.get()
	if isAuthError(err) || cfg.SASL.Mechanism != "" && dialErr != nil && closedDuringInit(dialErr) {
		if !isAuthError(err) {
			err = fmt.Errorf("%w (the brokers closed the connection during authentication: %w)", err, dialErr)
		}
		return &lifecycle.InfraError{
			Type: lifecycle.TypeConnection, Component: ModuleName, Op: "connect", Field: "sasl",
			Message: fmt.Sprintf("brokers %v refused SASL %s authentication of user %q: check sasl.username and sasl.password",
				cfg.Brokers, cfg.SASL.Mechanism, cfg.SASL.Username),
			Cause: err,
		}
	}
	cause := err
	if dialErr != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		cause = fmt.Errorf("%w (last dial error: %w)", err, dialErr)
	}
	return &lifecycle.InfraError{
		Type: lifecycle.TypeConnection, Component: ModuleName, Op: "connect", Field: "brokers",
		Message: fmt.Sprintf("no broker of %v answered a metadata request within %s", cfg.Brokers, cfg.ConnectTimeout),
		Cause:   cause,
	}
}

// createTopics makes the configured topics that do not exist. An existing
// topic is left as it is (a differing partition count is logged).
func (c *Client) createTopics(ctx context.Context, adm *kadm.Client, topics []TopicConfig) error {
	if len(topics) == 0 {
		return nil
	}
	cfg := c.cfg.Load()
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout.Std())
	defer cancel()
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	existing, err := adm.ListTopics(fresh(ctx), names...)
	if err != nil {
		return lifecycle.ConnectionError(ModuleName, "list topics", err)
	}
	for i, t := range topics {
		if d, ok := existing[t.Name]; ok && d.Err == nil {
			if int32(len(d.Partitions)) != t.partitions() {
				c.log.Warn("mq: topic exists with a different partition count; left unchanged",
					zap.String("topic", t.Name), zap.Int("partitions", len(d.Partitions)), zap.Int32("configured", t.partitions()))
			}
			continue
		}
		var configs map[string]*string
		if len(t.Configs) > 0 {
			configs = make(map[string]*string, len(t.Configs))
			for k, v := range t.Configs {
				configs[k] = &v
			}
		}
		resp, err := adm.CreateTopic(ctx, t.partitions(), t.replicationFactor(), configs, t.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			c.log.Info("mq: topic created", zap.String("topic", t.Name),
				zap.Int32("partitions", t.partitions()), zap.Int16("replication_factor", t.replicationFactor()))
		case errors.Is(err, kerr.TopicAlreadyExists):
			// Another instance created it between our list and create.
		default:
			return &lifecycle.InfraError{
				Type: lifecycle.TypeConfig, Component: ModuleName, Op: "create topic",
				Field: fmt.Sprintf("topics[%d]", i), Message: fmt.Sprintf("topic %q could not be created", t.Name), Cause: err,
			}
		}
	}
	return nil
}

// Update applies a new config. Fields marked live in README.md take effect
// at once (retries, backoff, dead-lettering, paused topics, poll sizes,
// franz-go's log level, new topics); a change to any other field is
// logged at warn and waits for a restart. An invalid cfg is refused.
func (c *Client) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := c.cfg.Swap(&cfg)
	if old.LogLevel != cfg.LogLevel {
		c.kgoLvl.Store(int32(kgoLogLevels[cfg.LogLevel]))
	}
	c.logChanges(*old, cfg)
	if !slices.Equal(old.Consumer.PausedTopics, cfg.Consumer.PausedTopics) {
		for _, s := range c.snapshotConsumers() {
			s.applyPauses()
		}
	}
	if added := addedTopics(old.Topics, cfg.Topics); len(added) > 0 {
		c.createTopicsLater(added)
	}
	return nil
}

func (c *Client) logChanges(old, next Config) {
	if changed := restartFields(c.builtConfig(old), next); len(changed) > 0 {
		c.log.Warn("mq: config changed in fields that apply only after a restart", zap.Strings("fields", changed))
	}
	o, n := old.Consumer, next.Consumer
	live := []struct {
		field  string
		differ bool
		value  any
	}{
		{"connectTimeout", old.ConnectTimeout != next.ConnectTimeout, next.ConnectTimeout},
		{"logLevel", old.LogLevel != next.LogLevel, next.LogLevel},
		{"consumer.maxRetries", o.MaxRetries != n.MaxRetries, n.MaxRetries},
		{"consumer.retryBackoff", o.RetryBackoff != n.RetryBackoff, n.RetryBackoff},
		{"consumer.retryBackoffMax", o.RetryBackoffMax != n.RetryBackoffMax, n.RetryBackoffMax},
		{"consumer.deadLetter", o.DeadLetter != n.DeadLetter, n.DeadLetter},
		{"consumer.pausedTopics", !slices.Equal(o.PausedTopics, n.PausedTopics), n.PausedTopics},
		{"consumer.maxPollRecords", o.MaxPollRecords != n.MaxPollRecords, n.MaxPollRecords},
		{"consumer.bufferedRecords", o.BufferedRecords != n.BufferedRecords, n.BufferedRecords},
	}
	for _, l := range live {
		if l.differ {
			c.log.Info("mq: config change applied", zap.String("field", l.field), zap.Any("value", l.value))
		}
	}
}

// builtConfig is what restart-only fields are compared against: the
// config the clients were made with once started, else old.
func (c *Client) builtConfig(old Config) Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateStarted {
		return c.built
	}
	return old
}

func addedTopics(old, next []TopicConfig) []TopicConfig {
	var added []TopicConfig
	for _, t := range next {
		if !slices.ContainsFunc(old, func(o TopicConfig) bool { return o.Name == t.Name }) {
			added = append(added, t)
		}
	}
	return added
}

// createTopicsLater creates topics added by a live change, off the config
// goroutine, which must return quickly.
func (c *Client) createTopicsLater(topics []TopicConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateStarted {
		return // Start creates them
	}
	adm := c.adm
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-c.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := c.createTopics(ctx, adm, topics); err != nil {
			c.log.Warn("mq: topics added by a config change were not created", zap.Error(c.report(ctx, err)))
		}
	}()
}

// Close stops every consumer (each drains, commits and leaves its group),
// then flushes the producer and closes it, all within ctx. Records that
// were still waiting when ctx ended fail to their callbacks with ErrClosed
// and are counted in mq.produce.failed.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return nil
	}
	wasStarted := c.state == stateStarted
	c.state = stateClosed
	c.prod.Store(nil)
	close(c.closed)
	consumers := slices.Clone(c.consumers)
	kcl := c.kcl
	c.mu.Unlock()

	began := time.Now()
	errs := make([]error, len(consumers)+1)
	var wg sync.WaitGroup
	for i, s := range consumers {
		wg.Go(func() { errs[i] = s.Stop(ctx) })
	}
	wg.Wait()
	c.bg.Wait()
	if !wasStarted {
		return errors.Join(errs...)
	}
	buffered := kcl.BufferedProduceRecords()
	if err := kcl.Flush(ctx); err != nil {
		errs[len(consumers)] = lifecycle.TimeoutError(ModuleName, "flush", err)
		c.log.Warn("mq: producer flush did not finish; records still waiting fail with ErrClosed",
			zap.Int64("waiting", kcl.BufferedProduceRecords()), zap.Error(err))
	}
	kcl.Close()
	c.awaitPromises(kcl)
	c.metrics.stop()
	c.log.Info("mq: stopped",
		zap.Int("consumers", len(consumers)),
		zap.Int64("flushed_records", buffered),
		zap.Duration("elapsed", time.Since(began)))
	return errors.Join(errs...)
}

// promiseWait bounds Close's wait for the callbacks of the records it
// failed: they only report, so a callback that blocks longer is its own bug.
const promiseWait = 5 * time.Second

// awaitPromises waits until every record franz-go held has been reported.
// kgo.Client.Close fails the records still waiting, but runs their
// promises on a goroutine of its own: without this wait, callbacks and
// the failed-record count could come after Close returned.
func (c *Client) awaitPromises(kcl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), promiseWait)
	defer cancel()
	if err := kcl.Flush(ctx); err != nil {
		c.log.Warn("mq: send callbacks still running after close", zap.Int64("records", kcl.BufferedProduceRecords()),
			zap.Duration("waited", promiseWait))
	}
}

// Raw returns the franz-go client used for producing and admin requests,
// for what this package does not wrap. It is nil until the Client starts.
func (c *Client) Raw() *kgo.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kcl
}

// producerClient returns the started producer client or the error to
// report.
func (c *Client) producerClient() (*kgo.Client, error) {
	if kcl := c.prod.Load(); kcl != nil {
		return kcl, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateNew, stateStarting:
		return nil, ErrNotStarted
	case stateClosed:
		return nil, ErrClosed
	}
	return c.kcl, nil
}

func (c *Client) snapshotConsumers() []*Consumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.consumers)
}

func (c *Client) removeConsumer(s *Consumer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.consumers = slices.DeleteFunc(c.consumers, func(x *Consumer) bool { return x == s })
}

// report passes an InfraError to the error handler (which counts it) and
// returns it.
func (c *Client) report(ctx context.Context, err error) error {
	if c.opts.errs != nil && err != nil {
		return c.opts.errs(ctx, err)
	}
	return err
}

// commonOptions are the options every franz-go client of this Client
// shares: brokers, identity, security, logging, hooks.
func (c *Client) commonOptions(cfg Config, tracer *kotel.Tracer) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.DialTimeout(cfg.DialTimeout.Std()),
		kgo.MetadataMinAge(cfg.MetadataMinAge.Std()),
		kgo.WithLogger(c.kgoLogger()),
		kgo.WithHooks(&c.lastErr),
		kgo.WithHooks(traceHooks(tracer)...),
	}
	if m := saslMechanism(cfg.SASL); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	if cfg.TLS.On() {
		tc, err := cfg.TLS.ClientConfig(ModuleName)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

func (c *Client) producerOptions(cfg Config) ([]kgo.Opt, error) {
	opts, err := c.commonOptions(cfg, c.tracer)
	if err != nil {
		return nil, err
	}
	p := cfg.Producer
	opts = append(opts,
		kgo.RequiredAcks(acksValues[p.Acks]),
		kgo.ProducerBatchCompression(compressionCodecs[p.Compression]),
		kgo.ProducerLinger(p.Linger.Std()),
		kgo.ProducerBatchMaxBytes(int32(p.MaxRecordBytes+batchOverhead)),
		kgo.MaxBufferedRecords(p.MaxBufferedRecords),
		kgo.ProduceRequestTimeout(p.RequestTimeout.Std()),
		kgo.RecordDeliveryTimeout(p.DeliveryTimeout.Std()),
	)
	if p.MaxBufferedBytes > 0 {
		opts = append(opts, kgo.MaxBufferedBytes(p.MaxBufferedBytes))
	}
	if !p.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return opts, nil
}

// kgoLogger sends franz-go's logs to the module logger, capped at the
// live logLevel so its chatty info lines stay out unless asked for.
func (c *Client) kgoLogger() kgo.Logger {
	l := c.log.Named("kgo")
	core := l.Core()
	return kzap.New(l, kzap.LevelFn(func() kgo.LogLevel {
		lvl := kgo.LogLevel(c.kgoLvl.Load())
		for lvl > kgo.LogLevelNone && !core.Enabled(zapLevel(lvl)) {
			lvl--
		}
		return lvl
	}))
}

func zapLevel(l kgo.LogLevel) zapcore.Level {
	switch l {
	case kgo.LogLevelDebug:
		return zapcore.DebugLevel
	case kgo.LogLevelInfo:
		return zapcore.InfoLevel
	case kgo.LogLevelWarn:
		return zapcore.WarnLevel
	default:
		return zapcore.ErrorLevel
	}
}

func saslMechanism(s SASLConfig) sasl.Mechanism {
	switch s.Mechanism {
	case saslPlain:
		return plain.Auth{User: s.Username, Pass: s.Password.Reveal()}.AsMechanism()
	case saslScram256:
		return scram.Auth{User: s.Username, Pass: s.Password.Reveal()}.AsSha256Mechanism()
	case saslScram512:
		return scram.Auth{User: s.Username, Pass: s.Password.Reveal()}.AsSha512Mechanism()
	}
	return nil
}

// connectErrors remembers the last failed dial, so a probe that times out
// can say why (connection refused, no such host, TLS handshake failure).
type connectErrors struct {
	mu  sync.Mutex
	err error
}

var _ kgo.HookBrokerConnect = (*connectErrors)(nil)

func (e *connectErrors) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
}

func (e *connectErrors) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
