package fxinfratest

import (
	"encoding/json"
	"time"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

// KafkaOption tunes WithKafka.
type KafkaOption func(*kafkaSetup)

type kafkaSetup struct {
	opts   devstack.KafkaOptions
	config map[string]any
	onUp   func(*devstack.Kafka)
}

// KafkaBrokers starts n kfake brokers (default 1).
func KafkaBrokers(n int) KafkaOption { return func(k *kafkaSetup) { k.opts.Brokers = n } }

// KafkaConfig merges fields into the seeded "mq" document, e.g.
// KafkaConfig(map[string]any{"topics": []any{map[string]any{"name": "t"}}}).
func KafkaConfig(fields map[string]any) KafkaOption {
	return func(k *kafkaSetup) {
		for f, v := range fields {
			k.config[f] = v
		}
	}
}

// KafkaStarted receives the kfake cluster (nil on a real cluster), for
// its addresses and for fault injection through Cluster().
func KafkaStarted(fn func(*devstack.Kafka)) KafkaOption { return func(k *kafkaSetup) { k.onUp = fn } }

// WithKafka gives the app a Kafka for the mq module: the cluster
// IMINFRA_TEST_KAFKA_BROKERS names (devstack.EnvTestKafka), else a kfake
// cluster on loopback TCP ports of the test's own, closed when the test
// ends. A named cluster that does not answer skips the test, or fails it
// with IMINFRA_TEST_REQUIRE_REAL=1.
//
// It seeds the service-layer "mq" document with the brokers, a 5s
// connectTimeout and a 200ms metadataMinAge (so faults show quickly), plus
// KafkaConfig fields. kfake accepts group sessions down to 100ms, so a test
// can let a dead member expire fast. The app still needs mq.Module in its
// graph and something that asks for *mq.Client. When replacing the
// document with app.Put, keep "brokers".
func WithKafka(opts ...KafkaOption) Option {
	return func(s *Setup) {
		t := s.T()
		t.Helper()
		k := &kafkaSetup{
			opts:   devstack.KafkaOptions{GroupMinSessionTimeout: 100 * time.Millisecond},
			config: map[string]any{"connectTimeout": "5s", "metadataMinAge": "200ms"},
		}
		for _, o := range opts {
			o(k)
		}
		brokers, err := devstack.TestKafkaBrokers()
		switch {
		case err != nil && devstack.RequireReal():
			t.Fatalf("fxinfratest: %v (%s=1)", err, devstack.EnvRequireReal)
		case err != nil:
			t.Skipf("fxinfratest: %v", err)
		case brokers != nil:
			if k.onUp != nil {
				k.onUp(nil)
			}
		default:
			kafka, err := devstack.StartKafka(k.opts)
			if err != nil {
				t.Fatalf("fxinfratest: kfake: %v", err)
			}
			s.Cleanup(kafka.Close)
			brokers = kafka.Addrs()
			if k.onUp != nil {
				k.onUp(kafka)
			}
		}
		k.config["brokers"] = brokers
		doc, err := json.Marshal(k.config)
		if err != nil {
			t.Fatalf("fxinfratest: mq config: %v", err)
		}
		s.Config(mq.ModuleName, string(doc))
	}
}
