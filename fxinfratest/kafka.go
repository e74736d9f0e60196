package fxinfratest

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"time"

	"github.com/gochat/im-infra/devstack"
)

// EnvKafkaBrokers names a real Kafka cluster ("host:port,host:port") for
// WithKafka to use instead of an in-process kfake.
const EnvKafkaBrokers = "IMINFRA_TEST_KAFKA_BROKERS"

// KafkaComponent is the config component WithKafka seeds; it is
// mq.ModuleName (fxinfratest does not import the modules it serves).
const KafkaComponent = "mq"

// KafkaOption tunes WithKafka.
type KafkaOption func(*kafkaSetup)

type kafkaSetup struct {
	opts   devstack.KafkaOptions
	config map[string]any
	onUp   func(*devstack.Kafka)
}

// KafkaBrokers starts n brokers (default 1).
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

// KafkaStarted receives the devstack cluster (nil on a real cluster), for
// fault injection through its Cluster().
func KafkaStarted(fn func(*devstack.Kafka)) KafkaOption { return func(k *kafkaSetup) { k.onUp = fn } }

// WithKafka gives the app a Kafka: the cluster EnvKafkaBrokers names, or a
// kfake cluster on loopback TCP ports (closed when the test ends). It seeds
// the service-layer "mq" document with the brokers (plus KafkaConfig
// fields), with a short connectTimeout and metadataMinAge so faults show
// quickly. The app still needs mq.Module to use it. A real cluster that
// does not answer skips the test, or fails it with
// IMINFRA_TEST_REQUIRE_REAL=1.
func WithKafka(opts ...KafkaOption) Option {
	return func(s *Setup) {
		t := s.T()
		t.Helper()
		k := &kafkaSetup{
			// Test groups should expire a dead member in seconds.
			opts:   devstack.KafkaOptions{GroupMinSessionTimeout: 100 * time.Millisecond},
			config: map[string]any{"connectTimeout": "5s", "metadataMinAge": "200ms"},
		}
		for _, o := range opts {
			o(k)
		}
		var brokers []string
		if env := os.Getenv(EnvKafkaBrokers); env != "" {
			brokers = strings.Split(env, ",")
			if err := reachable(brokers); err != nil {
				if RequireReal() {
					t.Fatalf("fxinfratest: kafka at %s=%s: %v", EnvKafkaBrokers, env, err)
				}
				t.Skipf("fxinfratest: kafka at %s=%s unreachable: %v", EnvKafkaBrokers, env, err)
			}
			if k.onUp != nil {
				k.onUp(nil)
			}
		} else {
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
		s.Config(KafkaComponent, string(doc))
	}
}

// reachable dials every broker once.
func reachable(brokers []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var d net.Dialer
	for _, b := range brokers {
		c, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			return err
		}
		_ = c.Close()
	}
	return nil
}
