package mq_test

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/fxinfra"
	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord"
	"github.com/gochat/im-infra/modules/mq"
)

// The module on the test kit: a consumer subscribed in phase 1 starts with
// the app, records flow, a live change applies, a restart-only change is
// logged, health reports "mq", and stop drains.
func TestModuleOnTestKit(t *testing.T) {
	const topic = "kit.events"
	var (
		c        *mq.Client
		agg      *lifecycle.Aggregator
		consumer *mq.Consumer
		brokers  []string
	)
	got := make(chan string, 10)
	app := fxinfratest.New(t,
		fxinfratest.WithKafka(
			fxinfratest.KafkaConfig(map[string]any{"topics": []any{map[string]any{"name": topic, "partitions": 2}}}),
			fxinfratest.KafkaStarted(func(k *devstack.Kafka) {
				if k == nil { // a real cluster
					brokers, _ = devstack.TestKafkaBrokers()
					return
				}
				brokers = k.Addrs()
			}),
		),
		fxinfratest.WithFx(
			fx.Populate(&c, &agg),
			// Subscribing in phase 1 does no I/O; the member joins on start.
			fx.Invoke(func(c *mq.Client) error {
				var err error
				consumer, err = c.Subscribe("kit", []string{topic}, func(_ context.Context, m *mq.Message) error {
					got <- string(m.Value)
					return nil
				})
				return err
			}),
		),
	)
	app.Logs.Require(t, "mq: connected to kafka")
	app.Logs.Require(t, "mq: consumer started")

	require.NoError(t, c.SendSync(context.Background(), &mq.Message{Topic: topic, Value: []byte("one")}))
	select {
	case v := <-got:
		assert.Equal(t, "one", v)
	case <-time.After(10 * time.Second):
		t.Fatal("not consumed")
	}
	rep := agg.Check(context.Background())
	assert.Equal(t, lifecycle.Healthy, rep.Checks[mq.ModuleName].State, rep.Checks[mq.ModuleName].Message)

	doc := func(fields map[string]any) string {
		// Put replaces the whole service document: keep what the kit seeded.
		fields["brokers"], fields["connectTimeout"], fields["metadataMinAge"] = brokers, "5s", "200ms"
		b, err := json.Marshal(fields)
		require.NoError(t, err)
		return string(b)
	}
	// Live: a topic paused through the config center.
	app.Put(t, mq.ModuleName, doc(map[string]any{"consumer": map[string]any{"pausedTopics": []string{topic}}}))
	assert.Equal(t, []string{topic}, consumer.Paused())
	entry := app.Logs.Require(t, "mq: config change applied")
	assert.Equal(t, "consumer.pausedTopics", entry.ContextMap()["field"])
	assert.Zero(t, app.Logs.Count("apply only after a restart"))
	// Restart-only: logged at warn, not applied.
	app.Put(t, mq.ModuleName, doc(map[string]any{"clientId": "renamed"}))
	assert.Empty(t, consumer.Paused(), "the pause went with the document")
	entry = app.Logs.Require(t, "apply only after a restart")
	assert.Equal(t, zap.WarnLevel, entry.Level)
	// Refused: the last valid config stays.
	err := app.TryPut(mq.ModuleName, doc(map[string]any{"consumer": map[string]any{"maxRetries": -1}}))
	assert.ErrorIs(t, err, lifecycle.ErrValidation)

	app.RequireStop()
	app.Logs.Require(t, "mq: consumer stopped")
	app.Logs.Require(t, "mq: stopped")
}

// TestModuleDialsNoBrokerUnlessAsked: the module is in the app and its
// config names a broker, but nothing asks for *mq.Client: nothing
// connects and there is no "mq" health check. Asking for it connects.
func TestModuleDialsNoBrokerUnlessAsked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var dialed atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			dialed.Add(1)
			_ = conn.Close()
		}
	}()
	var agg *lifecycle.Aggregator
	app := fxinfratest.New(t,
		fxinfratest.WithConfig(mq.ModuleName, `{"brokers":["`+ln.Addr().String()+`"]}`),
		fxinfratest.WithFx(fx.Populate(&agg)),
	)
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, dialed.Load(), "a broker was dialed though nothing asked for mq")
	_, ok := agg.Check(context.Background()).Checks[mq.ModuleName]
	assert.False(t, ok, "no mq health check without mq")
	app.RequireStop()

	// The same app asking for the client dials at start.
	var c *mq.Client
	kafka := fxinfratest.New(t, fxinfratest.WithKafka(), fxinfratest.WithFx(fx.Populate(&c, &agg)))
	_, ok = agg.Check(context.Background()).Checks[mq.ModuleName]
	assert.True(t, ok)
	assert.NotNil(t, c.Raw())
	kafka.RequireStop()
}

// startApp runs fxinfra, the mq module and a client on etcd with the mq
// document doc, and returns the start error.
func startApp(t *testing.T, doc string) error {
	t.Helper()
	e, err := devstack.StartEtcd(devstack.EtcdOptions{})
	require.NoError(t, err)
	defer e.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if doc != "" {
		_, err = cli.Put(ctx, config.Key("test", "svc", mq.ModuleName), doc)
		require.NoError(t, err)
	}
	_, err = cli.Put(ctx, config.Key("test", "svc", fxinfra.AdminComponent), `{"addr":"127.0.0.1:0"}`)
	require.NoError(t, err)
	env := lifecycle.MapEnviron(map[string]string{
		lifecycle.EnvService: "svc", lifecycle.EnvEnv: "test", lifecycle.EnvInstance: "svc-1",
		coord.EnvEndpoints: e.Endpoint(), fxinfra.EnvSnapshot: filepath.Join(t.TempDir(), "snap.json"),
	})
	var c *mq.Client
	app := fx.New(fxinfra.Module, fx.Replace(env), fx.Populate(&c), fx.NopLogger)
	began := time.Now()
	err = app.Start(ctx)
	assert.Less(t, time.Since(began), 4*time.Second, "start fails within the connect timeout")
	_ = app.Stop(context.Background())
	return err
}

func TestModuleStartFailsClearly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	tests := []struct {
		name  string
		doc   string
		typ   lifecycle.ErrorType
		field string
	}{
		{"no mq config at all", "", lifecycle.TypeValidation, "brokers"},
		{"unreachable broker", `{"brokers":["` + closed + `"],"connectTimeout":"1s"}`, lifecycle.TypeConnection, "brokers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := startApp(t, tt.doc)
			requireInfraError(t, err, tt.typ, tt.field)
		})
	}
}
