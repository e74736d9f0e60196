package mq_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/mq"
)

// requireInfraError checks err is an InfraError of typ naming field.
func requireInfraError(t *testing.T, err error, typ lifecycle.ErrorType, field string) *lifecycle.InfraError {
	t.Helper()
	var ie *lifecycle.InfraError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, typ, ie.Type, "%v", err)
	assert.Equal(t, mq.ModuleName, ie.Component)
	assert.Equal(t, field, ie.Field, "%v", err)
	return ie
}

func TestConfigValidation(t *testing.T) {
	valid := func() mq.Config { return testConfig([]string{"127.0.0.1:9092"}) }
	tests := []struct {
		name  string
		edit  func(*mq.Config)
		field string
	}{
		{"no brokers", func(c *mq.Config) { c.Brokers = nil }, "brokers"},
		{"broker without port", func(c *mq.Config) { c.Brokers = []string{"kafka-1"} }, "brokers[0]"},
		{"broker port out of range", func(c *mq.Config) { c.Brokers = []string{"h:1", "h:99999"} }, "brokers[1]"},
		{"empty client id", func(c *mq.Config) { c.ClientID = " " }, "clientId"},
		{"unknown SASL mechanism", func(c *mq.Config) { c.SASL = mq.SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"} }, "sasl.mechanism"},
		{"SASL without password", func(c *mq.Config) { c.SASL = mq.SASLConfig{Mechanism: "PLAIN", Username: "u"} }, "sasl.password"},
		{"password without mechanism", func(c *mq.Config) { c.SASL.Password = "p" }, "sasl.mechanism"},
		{"TLS cert without key", func(c *mq.Config) { c.TLS.CertFile = "c.pem" }, "tls.keyFile"},
		{"bad log level", func(c *mq.Config) { c.LogLevel = "loud" }, "logLevel"},
		{"zero connect timeout", func(c *mq.Config) { c.ConnectTimeout = 0 }, "connectTimeout"},
		{"bad acks", func(c *mq.Config) { c.Producer.Acks = "some" }, "producer.acks"},
		{"idempotent needs acks all", func(c *mq.Config) { c.Producer.Acks = "leader" }, "producer.acks"},
		{"unknown compression", func(c *mq.Config) { c.Producer.Compression = "brotli" }, "producer.compression"},
		{"negative linger", func(c *mq.Config) { c.Producer.Linger = -1 }, "producer.linger"},
		{"huge records", func(c *mq.Config) { c.Producer.MaxRecordBytes = 1 << 30 }, "producer.maxRecordBytes"},
		{"buffer below one record", func(c *mq.Config) { c.Producer.MaxBufferedBytes = 10 }, "producer.maxBufferedBytes"},
		{"zero concurrency", func(c *mq.Config) { c.Consumer.Concurrency = 0 }, "consumer.concurrency"},
		{"negative retries", func(c *mq.Config) { c.Consumer.MaxRetries = -1 }, "consumer.maxRetries"},
		{"backoff max below backoff", func(c *mq.Config) { c.Consumer.RetryBackoffMax = config.Duration(time.Millisecond) }, "consumer.retryBackoffMax"},
		{"heartbeat above session", func(c *mq.Config) { c.Consumer.HeartbeatInterval = c.Consumer.SessionTimeout }, "consumer.heartbeatInterval"},
		{"bad start offset", func(c *mq.Config) { c.Consumer.StartOffset = "middle" }, "consumer.startOffset"},
		{"bad paused topic", func(c *mq.Config) { c.Consumer.PausedTopics = []string{"a b"} }, "consumer.pausedTopics[0]"},
		{"topic name with slash", func(c *mq.Config) { c.Topics = []mq.TopicConfig{{Name: "a/b"}} }, "topics[0].name"},
		{"topic defined twice", func(c *mq.Config) { c.Topics = []mq.TopicConfig{{Name: "a"}, {Name: "a"}} }, "topics[1].name"},
		{"negative partitions", func(c *mq.Config) { c.Topics = []mq.TopicConfig{{Name: "a", Partitions: -2}} }, "topics[0].partitions"},
	}
	require.NoError(t, valid().Validate())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.edit(&cfg)
			requireInfraError(t, cfg.Validate(), lifecycle.TypeValidation, tt.field)
		})
	}
}

func TestConfigDocuments(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		typ   lifecycle.ErrorType
		field string
	}{
		{"unknown field", `{"brokers":["h:1"],"producer":{"lingerMs":5}}`, lifecycle.TypeConfig, "producer.lingerMs"},
		{"wrong type", `{"brokers":"h:1"}`, lifecycle.TypeConfig, "brokers"},
		{"number as duration", `{"brokers":["h:1"],"dialTimeout":5}`, lifecycle.TypeConfig, "dialTimeout"},
		{"invalid value", `{"brokers":["h:1"],"consumer":{"maxRetries":-3}}`, lifecycle.TypeValidation, "consumer.maxRetries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse[mq.Config](mq.ModuleName, config.Layer{Key: "/config/dev/svc/mq", Data: []byte(tt.doc)})
			requireInfraError(t, err, tt.typ, tt.field)
		})
	}
	cfg, err := config.Parse[mq.Config](mq.ModuleName, config.Layer{Key: "k", Data: []byte(
		`{"brokers":["k1:9092","k2:9092"],"sasl":{"mechanism":"SCRAM-SHA-512","username":"im","password":"s3cret"},"consumer":{"maxRetries":5}}`)})
	require.NoError(t, err)
	assert.Equal(t, 5, cfg.Consumer.MaxRetries)
	assert.Equal(t, "lz4", cfg.Producer.Compression, "defaults stay under a partial document")
	assert.NotContains(t, cfg.SASL.Password.String(), "s3cret")
}

func TestBadMessagesFailAtOnce(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: "ok", Partitions: 1})
	cfg.Producer.MaxRecordBytes = 1000
	c := newTestClient(t, cfg)
	ctx := context.Background()
	tests := []struct {
		name  string
		msg   *mq.Message
		field string
	}{
		{"nil message", nil, "message"},
		{"empty topic", &mq.Message{Value: []byte("v")}, "topic"},
		{"illegal topic", &mq.Message{Topic: "chat messages", Value: []byte("v")}, "topic"},
		{"too long topic", &mq.Message{Topic: strings.Repeat("t", 250), Value: []byte("v")}, "topic"},
		{"oversize value", &mq.Message{Topic: "ok", Value: make([]byte, 1001)}, "value"},
		{"oversize with headers", &mq.Message{Topic: "ok", Value: make([]byte, 900), Headers: []mq.Header{{Key: "h", Value: make([]byte, 200)}}}, "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			began := time.Now()
			err := c.SendSync(ctx, tt.msg)
			assert.Less(t, time.Since(began), 100*time.Millisecond, "checked before sending")
			requireInfraError(t, err, lifecycle.TypeValidation, tt.field)
		})
	}
	err := c.SendSync(ctx, &mq.Message{Topic: "ok", Value: make([]byte, 1001)})
	assert.ErrorIs(t, err, kerr.MessageTooLarge)
	require.NoError(t, c.SendSync(ctx, &mq.Message{Topic: "ok", Value: make([]byte, 1000)}), "the limit itself is allowed")
}

// TestBrokerRefusesOversizeRecord: when maxRecordBytes is set above what
// the broker accepts (message.max.bytes, 1 MiB in kfake as in Kafka), the
// broker's refusal comes back as a VALIDATION error naming the value.
func TestBrokerRefusesOversizeRecord(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: "big", Partitions: 1})
	cfg.Producer.MaxRecordBytes = 4 << 20
	c := newTestClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := make([]byte, 2<<20)
	_, _ = rand.Read(big) // incompressible: lz4 would shrink zeros below the limit
	err := c.SendSync(ctx, &mq.Message{Topic: "big", Value: big})
	requireInfraError(t, err, lifecycle.TypeValidation, "value")
	assert.ErrorIs(t, err, kerr.MessageTooLarge)
	require.NoError(t, c.SendSync(ctx, &mq.Message{Topic: "big", Value: []byte("small")}), "the producer keeps working")
}

func TestSendToMissingTopicIsConfigError(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	c := newTestClient(t, testConfig(k.Addrs()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.SendSync(ctx, &mq.Message{Topic: "nobody.made.this", Value: []byte("v")})
	requireInfraError(t, err, lifecycle.TypeConfig, "topic")
	assert.Contains(t, err.Error(), "nobody.made.this")
}

func TestUnknownBrokersFailStartWithinConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	tests := []struct {
		name    string
		brokers []string
	}{
		{"connection refused", []string{closed}},
		{"no such host", []string{"kafka-missing.invalid:9092"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(tt.brokers)
			cfg.ConnectTimeout = config.Duration(time.Second)
			began := time.Now()
			_, err := mq.New(context.Background(), cfg)
			took := time.Since(began)
			ie := requireInfraError(t, err, lifecycle.TypeConnection, "brokers")
			assert.ErrorIs(t, err, lifecycle.ErrConnection)
			assert.Contains(t, ie.Error(), tt.brokers[0], "the error names the brokers")
			assert.Less(t, took, 3*time.Second)
			t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
		})
	}
}

func TestSASL(t *testing.T) {
	users := []devstack.KafkaUser{
		{Mechanism: "PLAIN", User: "plain-user", Password: "plain-pass"},
		{Mechanism: "SCRAM-SHA-256", User: "scram256", Password: "pass-256"},
		{Mechanism: "SCRAM-SHA-512", User: "scram512", Password: "pass-512"},
	}
	k := startKafka(t, devstack.KafkaOptions{Users: users})
	for _, u := range users {
		t.Run(u.Mechanism, func(t *testing.T) {
			cfg := testConfig(k.Addrs(), mq.TopicConfig{Name: "sasl-" + strings.ToLower(u.Mechanism), Partitions: 1})
			cfg.SASL = mq.SASLConfig{Mechanism: u.Mechanism, Username: u.User, Password: config.Secret(u.Password)}
			c := newTestClient(t, cfg)
			require.NoError(t, c.SendSync(context.Background(), &mq.Message{Topic: cfg.Topics[0].Name, Value: []byte("v")}))

			const wrong = "Wr0ng-Pa55word"
			cfg.SASL.Password = wrong
			cfg.Topics = nil
			cfg.ConnectTimeout = config.Duration(time.Second)
			_, err := mq.New(context.Background(), cfg)
			ie := requireInfraError(t, err, lifecycle.TypeConnection, "sasl")
			assert.Contains(t, ie.Error(), u.User)
			assert.NotContains(t, ie.Error(), wrong, "never the password")
			assert.NotContains(t, ie.Error(), u.Password)
		})
	}
}

func TestTLSFilesAreCheckedAtStart(t *testing.T) {
	cfg := testConfig([]string{"127.0.0.1:9092"})
	cfg.TLS.CAFile = "/nonexistent/ca.pem"
	_, err := mq.New(context.Background(), cfg)
	requireInfraError(t, err, lifecycle.TypeConfig, "tls.caFile")
}

func TestSubscribeRejectsBadArguments(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	c := newTestClient(t, testConfig(k.Addrs()))
	h := func(context.Context, *mq.Message) error { return nil }
	tests := []struct {
		name   string
		group  string
		topics []string
		h      mq.Handler
		field  string
	}{
		{"empty group", "", []string{"t"}, h, "group"},
		{"no topics", "g", nil, h, "topics"},
		{"illegal topic", "g", []string{"t", "a:b"}, h, "topics[1]"},
		{"nil handler", "g", []string{"t"}, nil, "handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Subscribe(tt.group, tt.topics, tt.h)
			requireInfraError(t, err, lifecycle.TypeValidation, tt.field)
		})
	}
}

func TestClosedClientRefusesWork(t *testing.T) {
	k := startKafka(t, devstack.KafkaOptions{})
	c, err := mq.New(context.Background(), testConfig(k.Addrs(), mq.TopicConfig{Name: "t", Partitions: 1}))
	require.NoError(t, err)
	require.NoError(t, c.Close(context.Background()))
	assert.ErrorIs(t, c.SendSync(context.Background(), &mq.Message{Topic: "t"}), mq.ErrClosed)
	_, err = c.Subscribe("g", []string{"t"}, func(context.Context, *mq.Message) error { return nil })
	assert.ErrorIs(t, err, mq.ErrClosed)
	assert.True(t, errors.Is(c.Flush(context.Background()), mq.ErrClosed))
}
