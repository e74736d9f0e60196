package mq

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Config is the "mq" component: where the Kafka cluster is, how to
// authenticate, how records are produced and consumed, and which topics
// must exist. Which fields apply live and which need a restart is listed
// in README.md and enforced by Client.Update.
type Config struct {
	// Brokers are the seed brokers, "host:port". Required; there is no
	// localhost default, so a service never talks to a cluster it was not
	// pointed at. Restart.
	Brokers []string `json:"brokers"`
	// ClientID names this process to the brokers (quotas, broker logs).
	// Default "gochat". Restart.
	ClientID string `json:"clientId"`
	// SASL authenticates every connection. Restart.
	SASL SASLConfig `json:"sasl"`
	// TLS encrypts every connection. Restart.
	TLS TLSConfig `json:"tls"`
	// DialTimeout bounds one TCP (and TLS) connection attempt. Default 5s. Restart.
	DialTimeout config.Duration `json:"dialTimeout"`
	// ConnectTimeout bounds the metadata request made at start and by the
	// health check: unreachable brokers fail the start within it.
	// Default 10s. Live.
	ConnectTimeout config.Duration `json:"connectTimeout"`
	// MetadataMinAge is the shortest time between two metadata refreshes.
	// A refresh is what a producer or consumer waits for after a leader
	// moves or a broker dies, so this bounds the stall of a failover;
	// franz-go's default of 5s is lowered to 1s. Restart.
	MetadataMinAge config.Duration `json:"metadataMinAge"`
	// LogLevel is the most verbose level of franz-go's own log lines that
	// reach the module's logger: none, error, warn, info or debug.
	// Default warn: franz-go logs every connection and rebalance step at
	// info. Live.
	LogLevel string `json:"logLevel"`
	// Producer settings. Restart.
	Producer ProducerConfig `json:"producer"`
	// Consumer settings; some live, some restart (see each field).
	Consumer ConsumerConfig `json:"consumer"`
	// Topics are created at start if missing; a topic added live is
	// created when the change applies. An existing topic is never
	// altered. Live (additions only).
	Topics []TopicConfig `json:"topics"`
}

// SASLConfig selects a SASL mechanism. An empty Mechanism disables SASL.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `json:"mechanism,omitempty"`
	Username  string `json:"username,omitempty"`
	// Password is masked in logs, errors and dumps; "${ENV}" reads it from
	// the environment.
	Password config.Secret `json:"password,omitempty"`
}

// TLSConfig names PEM files for TLS to the brokers (config.TLS, written
// under "tls").
type TLSConfig = config.TLS

// ProducerConfig tunes the producer. Every field needs a restart: they
// are options of the franz-go client.
type ProducerConfig struct {
	// Acks is how many replicas must have a record before it counts as
	// sent: "all" (default; required by idempotence), "leader" or "none".
	Acks string `json:"acks"`
	// Idempotent makes retries unable to duplicate or reorder records
	// within a partition. Default true.
	Idempotent bool `json:"idempotent"`
	// Compression is none, gzip, snappy, lz4 (default) or zstd.
	Compression string `json:"compression"`
	// Linger is how long a partition's batch waits for more records
	// before it is sent. Default 5ms: batching raises throughput a lot
	// for a few ms of latency.
	Linger config.Duration `json:"linger"`
	// MaxRecordBytes is the largest record accepted (key + value +
	// headers); a larger one fails at once with a VALIDATION error. The
	// batch limit sent to the brokers is this plus 4 KiB of framing and
	// must stay within the broker's and topic's message.max.bytes (Kafka's
	// default is 1048588). Default 1000000.
	MaxRecordBytes int `json:"maxRecordBytes"`
	// MaxBufferedRecords bounds records waiting to be sent; Send blocks
	// (honouring its ctx) once it is reached. Default 10000.
	MaxBufferedRecords int `json:"maxBufferedRecords"`
	// MaxBufferedBytes bounds the bytes waiting to be sent; 0 means only
	// MaxBufferedRecords applies. Default 64 MiB.
	MaxBufferedBytes int `json:"maxBufferedBytes"`
	// RequestTimeout is how long a broker may take to answer a produce
	// request (the broker-side acks timeout). Default 10s.
	RequestTimeout config.Duration `json:"requestTimeout"`
	// DeliveryTimeout bounds how long a record may be retried before it
	// fails to its callback. Default 30s.
	DeliveryTimeout config.Duration `json:"deliveryTimeout"`
}

// ConsumerConfig tunes the consumer groups made by Subscribe.
type ConsumerConfig struct {
	// Concurrency is how many partitions of one subscription are handled
	// at the same time; records of one partition are always handled one
	// after another, in order. Default 16. Restart.
	Concurrency int `json:"concurrency"`
	// MaxRetries is how many times a failing record is retried before it
	// goes to the dead-letter topic. Default 3. Live.
	MaxRetries int `json:"maxRetries"`
	// RetryBackoff is the first wait between attempts; it doubles per
	// attempt up to RetryBackoffMax, with jitter. Defaults 100ms and 5s. Live.
	RetryBackoff    config.Duration `json:"retryBackoff"`
	RetryBackoffMax config.Duration `json:"retryBackoffMax"`
	// DeadLetter sends a record that failed 1+MaxRetries times to
	// "<topic>.dlq" and moves on. When false, such a record is retried
	// (at RetryBackoffMax) until it succeeds and its partition waits:
	// nothing is ever skipped. Default true. Live.
	DeadLetter bool `json:"deadLetter"`
	// PausedTopics stop being fetched by every consumer of this process
	// until removed. Records already fetched are still handled. Live.
	PausedTopics []string `json:"pausedTopics,omitempty"`
	// MaxPollRecords bounds the records taken from the client per poll.
	// Default 500. Live.
	MaxPollRecords int `json:"maxPollRecords"`
	// BufferedRecords bounds the records fetched but not yet handled by
	// one subscription; polling waits while it is reached (franz-go then
	// holds at most one more fetch per broker). A partition whose handler
	// is retrying a failed record stops being fetched and does not count,
	// so it cannot hold the others up. Default 1000. Live.
	BufferedRecords int `json:"bufferedRecords"`
	// CommitInterval is how often handled records are committed. Offsets
	// are also committed when partitions are revoked and on stop; after a
	// crash, records handled in the last interval are handled again.
	// Default 1s. Restart.
	CommitInterval config.Duration `json:"commitInterval"`
	// SessionTimeout, RebalanceTimeout and HeartbeatInterval are Kafka's
	// group settings (defaults 45s, 60s, 3s). A consumer that dies is
	// replaced after SessionTimeout; revoked partitions' handlers get half
	// of RebalanceTimeout to finish. Restart.
	SessionTimeout    config.Duration `json:"sessionTimeout"`
	RebalanceTimeout  config.Duration `json:"rebalanceTimeout"`
	HeartbeatInterval config.Duration `json:"heartbeatInterval"`
	// FetchMaxBytes and FetchMaxPartitionBytes bound one fetch response
	// and one partition in it (defaults 50 MiB and 1 MiB). Restart.
	FetchMaxBytes          int `json:"fetchMaxBytes"`
	FetchMaxPartitionBytes int `json:"fetchMaxPartitionBytes"`
	// FetchMaxWait is how long a broker holds a fetch open waiting for
	// data. Default 500ms. Restart.
	FetchMaxWait config.Duration `json:"fetchMaxWait"`
	// StartOffset is where a group with no committed offset starts:
	// "earliest" (default: nothing is skipped) or "latest". Restart.
	StartOffset string `json:"startOffset"`
}

// TopicConfig is a topic that must exist.
type TopicConfig struct {
	Name string `json:"name"`
	// Partitions is the partition count. Default 12 (a whole number of
	// partitions per consumer for 1, 2, 3, 4 or 6 consumers).
	Partitions int `json:"partitions"`
	// ReplicationFactor is the number of replicas; 0 or -1 means the
	// broker's default.replication.factor.
	ReplicationFactor int `json:"replicationFactor"`
	// Configs are topic configs such as retention.ms.
	Configs map[string]string `json:"configs,omitempty"`
}

// Defaults of Config.
const (
	DefaultClientID               = "gochat"
	DefaultDialTimeout            = 5 * time.Second
	DefaultConnectTimeout         = 10 * time.Second
	DefaultMetadataMinAge         = time.Second
	DefaultLogLevel               = "warn"
	DefaultAcks                   = "all"
	DefaultCompression            = "lz4"
	DefaultLinger                 = 5 * time.Millisecond
	DefaultMaxRecordBytes         = 1_000_000
	DefaultMaxBufferedRecords     = 10_000
	DefaultMaxBufferedBytes       = 64 << 20
	DefaultProduceRequestTimeout  = 10 * time.Second
	DefaultDeliveryTimeout        = 30 * time.Second
	DefaultConcurrency            = 16
	DefaultMaxRetries             = 3
	DefaultRetryBackoff           = 100 * time.Millisecond
	DefaultRetryBackoffMax        = 5 * time.Second
	DefaultMaxPollRecords         = 500
	DefaultBufferedRecords        = 1000
	DefaultCommitInterval         = time.Second
	DefaultSessionTimeout         = 45 * time.Second
	DefaultRebalanceTimeout       = 60 * time.Second
	DefaultHeartbeatInterval      = 3 * time.Second
	DefaultFetchMaxBytes          = 50 << 20
	DefaultFetchMaxPartitionBytes = 1 << 20
	DefaultFetchMaxWait           = 500 * time.Millisecond
	DefaultStartOffset            = "earliest"
	DefaultTopicPartitions        = 12

	// batchOverhead is what the batch limit adds to MaxRecordBytes for
	// the batch header and the record's own framing.
	batchOverhead = 4 << 10
)

// Defaults returns the design document's defaults: acks=all, idempotent,
// lz4, a 5ms linger, at-least-once consumers with 3 retries and a
// dead-letter topic. Brokers are left empty.
func (Config) Defaults() Config {
	return Config{
		ClientID:       DefaultClientID,
		DialTimeout:    config.Duration(DefaultDialTimeout),
		ConnectTimeout: config.Duration(DefaultConnectTimeout),
		MetadataMinAge: config.Duration(DefaultMetadataMinAge),
		LogLevel:       DefaultLogLevel,
		Producer: ProducerConfig{
			Acks:               DefaultAcks,
			Idempotent:         true,
			Compression:        DefaultCompression,
			Linger:             config.Duration(DefaultLinger),
			MaxRecordBytes:     DefaultMaxRecordBytes,
			MaxBufferedRecords: DefaultMaxBufferedRecords,
			MaxBufferedBytes:   DefaultMaxBufferedBytes,
			RequestTimeout:     config.Duration(DefaultProduceRequestTimeout),
			DeliveryTimeout:    config.Duration(DefaultDeliveryTimeout),
		},
		Consumer: ConsumerConfig{
			Concurrency:            DefaultConcurrency,
			MaxRetries:             DefaultMaxRetries,
			RetryBackoff:           config.Duration(DefaultRetryBackoff),
			RetryBackoffMax:        config.Duration(DefaultRetryBackoffMax),
			DeadLetter:             true,
			MaxPollRecords:         DefaultMaxPollRecords,
			BufferedRecords:        DefaultBufferedRecords,
			CommitInterval:         config.Duration(DefaultCommitInterval),
			SessionTimeout:         config.Duration(DefaultSessionTimeout),
			RebalanceTimeout:       config.Duration(DefaultRebalanceTimeout),
			HeartbeatInterval:      config.Duration(DefaultHeartbeatInterval),
			FetchMaxBytes:          DefaultFetchMaxBytes,
			FetchMaxPartitionBytes: DefaultFetchMaxPartitionBytes,
			FetchMaxWait:           config.Duration(DefaultFetchMaxWait),
			StartOffset:            DefaultStartOffset,
		},
	}
}

// Validate checks the config without touching the network. Errors are
// VALIDATION InfraErrors whose Field is the JSON path of the bad field.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return invalid("brokers", "at least one seed broker \"host:port\" is required")
	}
	for i, b := range c.Brokers {
		if msg := checkBroker(b); msg != "" {
			return invalid(fmt.Sprintf("brokers[%d]", i), msg)
		}
	}
	if strings.TrimSpace(c.ClientID) == "" {
		return invalid("clientId", "must not be empty")
	}
	if err := c.SASL.validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate(ModuleName); err != nil {
		return err
	}
	if _, ok := kgoLogLevels[c.LogLevel]; !ok {
		return invalid("logLevel", fmt.Sprintf("%q is not one of none, error, warn, info, debug", c.LogLevel))
	}
	for _, d := range []struct {
		field string
		v     config.Duration
	}{
		{"dialTimeout", c.DialTimeout},
		{"connectTimeout", c.ConnectTimeout},
		{"metadataMinAge", c.MetadataMinAge},
		{"producer.requestTimeout", c.Producer.RequestTimeout},
		{"producer.deliveryTimeout", c.Producer.DeliveryTimeout},
		{"consumer.retryBackoff", c.Consumer.RetryBackoff},
		{"consumer.retryBackoffMax", c.Consumer.RetryBackoffMax},
		{"consumer.commitInterval", c.Consumer.CommitInterval},
		{"consumer.sessionTimeout", c.Consumer.SessionTimeout},
		{"consumer.rebalanceTimeout", c.Consumer.RebalanceTimeout},
		{"consumer.heartbeatInterval", c.Consumer.HeartbeatInterval},
		{"consumer.fetchMaxWait", c.Consumer.FetchMaxWait},
	} {
		if d.v <= 0 {
			return invalid(d.field, fmt.Sprintf("must be a positive duration, got %s", d.v))
		}
	}
	if err := c.Producer.validate(); err != nil {
		return err
	}
	if err := c.Consumer.validate(); err != nil {
		return err
	}
	seen := make(map[string]bool, len(c.Topics))
	for i, t := range c.Topics {
		if err := t.validate(fmt.Sprintf("topics[%d]", i)); err != nil {
			return err
		}
		if seen[t.Name] {
			return invalid(fmt.Sprintf("topics[%d].name", i), fmt.Sprintf("topic %q is defined twice", t.Name))
		}
		seen[t.Name] = true
	}
	return nil
}

func checkBroker(b string) string {
	host, port, err := net.SplitHostPort(b)
	if err != nil || host == "" {
		return fmt.Sprintf("%q is not \"host:port\"", b)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Sprintf("%q has no valid port", b)
	}
	return ""
}

func (s SASLConfig) validate() error {
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" {
			return invalid("sasl.mechanism", "a username or password is set but no mechanism: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
		return nil
	case saslPlain, saslScram256, saslScram512:
	default:
		return invalid("sasl.mechanism", fmt.Sprintf("%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism))
	}
	if s.Username == "" {
		return invalid("sasl.username", "required with a SASL mechanism")
	}
	if s.Password == "" {
		return invalid("sasl.password", "required with a SASL mechanism")
	}
	return nil
}

func (p ProducerConfig) validate() error {
	if _, ok := acksValues[p.Acks]; !ok {
		return invalid("producer.acks", fmt.Sprintf("%q is not one of all, leader, none", p.Acks))
	}
	if p.Idempotent && p.Acks != "all" {
		return invalid("producer.acks", "an idempotent producer needs acks \"all\"; set producer.idempotent=false to use "+strconv.Quote(p.Acks))
	}
	if _, ok := compressionCodecs[p.Compression]; !ok {
		return invalid("producer.compression", fmt.Sprintf("%q is not one of none, gzip, snappy, lz4, zstd", p.Compression))
	}
	if p.Linger < 0 {
		return invalid("producer.linger", fmt.Sprintf("must not be negative, got %s", p.Linger))
	}
	if p.MaxRecordBytes <= 0 || p.MaxRecordBytes > 64<<20 {
		return invalid("producer.maxRecordBytes", fmt.Sprintf("must be between 1 and %d, got %d", 64<<20, p.MaxRecordBytes))
	}
	if p.MaxBufferedRecords <= 0 {
		return invalid("producer.maxBufferedRecords", fmt.Sprintf("must be positive, got %d", p.MaxBufferedRecords))
	}
	if p.MaxBufferedBytes < 0 || (p.MaxBufferedBytes > 0 && p.MaxBufferedBytes < p.MaxRecordBytes) {
		return invalid("producer.maxBufferedBytes", fmt.Sprintf("must be 0 (no byte limit) or at least producer.maxRecordBytes (%d), got %d", p.MaxRecordBytes, p.MaxBufferedBytes))
	}
	return nil
}

func (c ConsumerConfig) validate() error {
	positive := []struct {
		field string
		v     int
	}{
		{"consumer.concurrency", c.Concurrency},
		{"consumer.maxPollRecords", c.MaxPollRecords},
		{"consumer.bufferedRecords", c.BufferedRecords},
		{"consumer.fetchMaxBytes", c.FetchMaxBytes},
		{"consumer.fetchMaxPartitionBytes", c.FetchMaxPartitionBytes},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return invalid(p.field, fmt.Sprintf("must be positive, got %d", p.v))
		}
	}
	if c.MaxRetries < 0 {
		return invalid("consumer.maxRetries", fmt.Sprintf("must not be negative, got %d", c.MaxRetries))
	}
	if c.RetryBackoffMax < c.RetryBackoff {
		return invalid("consumer.retryBackoffMax", fmt.Sprintf("must be at least consumer.retryBackoff (%s), got %s", c.RetryBackoff, c.RetryBackoffMax))
	}
	if c.HeartbeatInterval >= c.SessionTimeout {
		return invalid("consumer.heartbeatInterval", fmt.Sprintf("must be below consumer.sessionTimeout (%s), got %s; a third of it is usual", c.SessionTimeout, c.HeartbeatInterval))
	}
	if c.StartOffset != "earliest" && c.StartOffset != "latest" {
		return invalid("consumer.startOffset", fmt.Sprintf("%q is not earliest or latest", c.StartOffset))
	}
	for i, t := range c.PausedTopics {
		if err := CheckTopic(t); err != nil {
			return invalid(fmt.Sprintf("consumer.pausedTopics[%d]", i), err.Error())
		}
	}
	return nil
}

func (t TopicConfig) validate(path string) error {
	if err := CheckTopic(t.Name); err != nil {
		return invalid(path+".name", err.Error())
	}
	if t.Partitions < 0 {
		return invalid(path+".partitions", fmt.Sprintf("must be positive (0 means %d), got %d", DefaultTopicPartitions, t.Partitions))
	}
	if t.ReplicationFactor < -1 || t.ReplicationFactor > 32767 {
		return invalid(path+".replicationFactor", fmt.Sprintf("must be positive, or 0 or -1 for the broker default, got %d", t.ReplicationFactor))
	}
	return nil
}

func (t TopicConfig) partitions() int32 {
	if t.Partitions == 0 {
		return DefaultTopicPartitions
	}
	return int32(t.Partitions)
}

func (t TopicConfig) replicationFactor() int16 {
	if t.ReplicationFactor <= 0 {
		return -1
	}
	return int16(t.ReplicationFactor)
}

func invalid(field, msg string) error { return lifecycle.ValidationError(ModuleName, field, msg) }

// restartFields names the top-level settings that only take effect when
// the clients are rebuilt, for the warning Update logs when one changes.
func restartFields(old, next Config) []string {
	var changed []string
	add := func(field string, differ bool) {
		if differ {
			changed = append(changed, field)
		}
	}
	add("brokers", !slices.Equal(old.Brokers, next.Brokers))
	add("clientId", old.ClientID != next.ClientID)
	add("sasl", old.SASL != next.SASL)
	add("tls", old.TLS != next.TLS)
	add("dialTimeout", old.DialTimeout != next.DialTimeout)
	add("metadataMinAge", old.MetadataMinAge != next.MetadataMinAge)
	add("producer", old.Producer != next.Producer)
	oc, nc := old.Consumer, next.Consumer
	add("consumer.concurrency", oc.Concurrency != nc.Concurrency)
	add("consumer.commitInterval", oc.CommitInterval != nc.CommitInterval)
	add("consumer.sessionTimeout", oc.SessionTimeout != nc.SessionTimeout)
	add("consumer.rebalanceTimeout", oc.RebalanceTimeout != nc.RebalanceTimeout)
	add("consumer.heartbeatInterval", oc.HeartbeatInterval != nc.HeartbeatInterval)
	add("consumer.fetchMaxBytes", oc.FetchMaxBytes != nc.FetchMaxBytes)
	add("consumer.fetchMaxPartitionBytes", oc.FetchMaxPartitionBytes != nc.FetchMaxPartitionBytes)
	add("consumer.fetchMaxWait", oc.FetchMaxWait != nc.FetchMaxWait)
	add("consumer.startOffset", oc.StartOffset != nc.StartOffset)
	return changed
}
