package devstack_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gochat/im-infra/devstack"
)

func TestKafkaProduceConsumeOnTCP(t *testing.T) {
	tests := []struct {
		name    string
		brokers int
	}{
		{"one broker", 1},
		{"three brokers", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := devstack.StartKafka(devstack.KafkaOptions{Brokers: tt.brokers})
			require.NoError(t, err)
			defer k.Close()
			require.Len(t, k.Addrs(), tt.brokers)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cl, err := kgo.NewClient(kgo.SeedBrokers(k.Addrs()...), kgo.ConsumeTopics("t"),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			require.NoError(t, err)
			defer cl.Close()
			_, err = kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "t")
			require.NoError(t, err)
			for i := range 10 {
				require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: fmt.Appendf(nil, "%d", i)}).FirstErr())
			}
			got := 0
			for got < 10 {
				fs := cl.PollFetches(ctx)
				require.NoError(t, fs.Err0())
				got += fs.NumRecords()
			}
			meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
			require.NoError(t, err)
			assert.Len(t, meta.Brokers, tt.brokers)
		})
	}
}

func TestKafkaRestartKeepsTopicsAndCommits(t *testing.T) {
	k, err := devstack.StartKafka(devstack.KafkaOptions{DataDir: t.TempDir()})
	require.NoError(t, err)
	defer k.Close()
	addrs := k.Addrs()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	require.NoError(t, err)
	adm := kadm.NewClient(cl)
	_, err = adm.CreateTopic(ctx, 1, 1, nil, "kept")
	require.NoError(t, err)
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: "kept", Value: []byte("v")}).FirstErr())
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "kept", Partition: 0, At: 1, LeaderEpoch: -1})
	_, err = adm.CommitOffsets(ctx, "g", offs)
	require.NoError(t, err)
	cl.Close()

	k.Stop()
	assert.Nil(t, k.Cluster())
	require.NoError(t, k.Restart())
	assert.Equal(t, addrs, k.Addrs())

	cl, err = kgo.NewClient(kgo.SeedBrokers(k.Addrs()...))
	require.NoError(t, err)
	defer cl.Close()
	adm = kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx, "kept")
	require.NoError(t, err)
	assert.True(t, topics.Has("kept"))
	fetched, err := adm.FetchOffsets(ctx, "g")
	require.NoError(t, err)
	o, ok := fetched.Lookup("kept", 0)
	require.True(t, ok)
	assert.EqualValues(t, 1, o.At)
}

func TestKafkaRestartWithoutDataDirRefuses(t *testing.T) {
	k, err := devstack.StartKafka(devstack.KafkaOptions{})
	require.NoError(t, err)
	defer k.Close()
	k.Stop()
	require.Error(t, k.Restart())
}

func TestKafkaRemovedBrokerDropsConnections(t *testing.T) {
	k, err := devstack.StartKafka(devstack.KafkaOptions{Brokers: 3})
	require.NoError(t, err)
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Addrs()...), kgo.RequestRetries(0))
	require.NoError(t, err)
	defer cl.Close()
	// Talk to every broker so each has a connection to drop.
	for node := range 3 {
		_, err := cl.Broker(node).Request(ctx, kmsg.NewPtrMetadataRequest())
		require.NoError(t, err)
	}

	require.NoError(t, k.Cluster().RemoveNode(1))
	// The open connection to node 1 is gone (kfake alone would keep
	// answering on it) and no new one can be made.
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	_, err = cl.Broker(1).Request(short, kmsg.NewPtrMetadataRequest())
	require.Error(t, err)
	_, err = cl.Broker(0).Request(short, kmsg.NewPtrMetadataRequest())
	require.NoError(t, err, "the other brokers keep serving")
}

func TestTestKafkaBrokers(t *testing.T) {
	t.Setenv(devstack.EnvTestKafka, "")
	brokers, err := devstack.TestKafkaBrokers()
	require.NoError(t, err)
	assert.Nil(t, brokers, "unset: tests use kfake")

	k, err := devstack.StartKafka(devstack.KafkaOptions{Brokers: 2})
	require.NoError(t, err)
	t.Setenv(devstack.EnvTestKafka, strings.Join(k.Addrs(), ","))
	brokers, err = devstack.TestKafkaBrokers()
	require.NoError(t, err)
	assert.Equal(t, k.Addrs(), brokers)

	k.Close()
	_, err = devstack.TestKafkaBrokers()
	require.Error(t, err, "a named cluster that does not answer")
	assert.Contains(t, err.Error(), devstack.EnvTestKafka)
}
