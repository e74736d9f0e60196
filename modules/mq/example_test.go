package mq_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gochat/im-infra/devstack"
	"github.com/gochat/im-infra/modules/mq"
)

func Example() {
	kafka, err := devstack.StartKafka(devstack.KafkaOptions{})
	if err != nil {
		panic(err)
	}
	defer kafka.Close()

	ctx := context.Background()
	cfg := mq.Config{}.Defaults()
	cfg.Brokers = kafka.Addrs()
	cfg.Topics = []mq.TopicConfig{{Name: mq.TopicMessagesUpstream, Partitions: 3}}
	client, err := mq.New(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer func() { _ = client.Close(ctx) }()

	handled := make(chan string)
	_, err = client.Subscribe("im-logic", []string{mq.TopicMessagesUpstream}, func(ctx context.Context, m *mq.Message) error {
		handled <- fmt.Sprintf("%s: %s", m.Key, m.Value)
		return nil // the offset is committed only now
	})
	if err != nil {
		panic(err)
	}

	msg := &mq.Message{Topic: mq.TopicMessagesUpstream, Key: []byte("conv-42"), Value: []byte("hello")}
	if err := client.SendSync(ctx, msg); err != nil {
		panic(err)
	}
	select {
	case got := <-handled:
		fmt.Println(got)
	case <-time.After(10 * time.Second):
		fmt.Println("not handled")
	}
	// Output: conv-42: hello
}

func ExampleDownstreamTopic() {
	fmt.Println(mq.DownstreamTopic("gateway-7"))
	fmt.Println(mq.DeadLetterTopic(mq.TopicTasksFanout))
	// Output:
	// gochat.messages.downstream.gateway-7
	// gochat.tasks.fanout.dlq
}

func ExampleCheckTopic() {
	fmt.Println(mq.CheckTopic(mq.DownstreamTopic("gw-1")))
	fmt.Println(mq.CheckTopic("gochat/messages"))
	// Output:
	// <nil>
	// topic name "gochat/messages" has '/' at byte 6; only letters, digits, '.', '_' and '-' are allowed
}

func ExampleClient_Send() {
	kafka, err := devstack.StartKafka(devstack.KafkaOptions{})
	if err != nil {
		panic(err)
	}
	defer kafka.Close()
	ctx := context.Background()
	cfg := mq.Config{}.Defaults()
	cfg.Brokers = kafka.Addrs()
	cfg.Topics = []mq.TopicConfig{{Name: mq.TopicMessagesPersist, Partitions: 1}}
	client, err := mq.New(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer func() { _ = client.Close(ctx) }()

	done := make(chan struct{})
	client.Send(ctx, &mq.Message{Topic: mq.TopicMessagesPersist, Value: []byte("m1")}, func(m *mq.Message, err error) {
		// Called once the brokers have the record (or it failed); keep it short.
		fmt.Println(m.Topic, m.Partition, m.Offset, err)
		close(done)
	})
	<-done

	// A record with no topic never leaves the process.
	err = client.SendSync(ctx, &mq.Message{Value: []byte("lost?")})
	fmt.Println(err)
	// Output:
	// gochat.messages.persist 0 0 <nil>
	// mq: validate [VALIDATION] field "topic": topic name is empty
}
