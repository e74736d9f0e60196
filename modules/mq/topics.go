package mq

import (
	"errors"
	"fmt"
)

// gochat's topics. A message from a client travels
//
//	gateway --upstream--> logic --persist--> repo
//	                        |--downstream.{instance}--> the gateway holding the recipient's connection
//	                        '--tasks.fanout--> task (large groups: one record, many recipients)
const (
	// TopicMessagesUpstream carries messages received by a gateway to the
	// logic service. Key: conversation ID, so a conversation stays in order.
	TopicMessagesUpstream = "gochat.messages.upstream"
	// TopicMessagesPersist carries accepted messages to the service that
	// stores them. Key: conversation ID.
	TopicMessagesPersist = "gochat.messages.persist"
	// TopicTasksFanout carries delivery of one message to many recipients
	// (large groups, broadcasts) to the task service, off the hot path.
	TopicTasksFanout = "gochat.tasks.fanout"

	downstreamPrefix = "gochat.messages.downstream."
	// DeadLetterSuffix is appended to a topic's name to name its
	// dead-letter topic.
	DeadLetterSuffix = ".dlq"
)

// DownstreamTopic is the topic a gateway instance consumes the messages to
// push to its own connections: gochat.messages.downstream.{instance}.
func DownstreamTopic(instance string) string { return downstreamPrefix + instance }

// DeadLetterTopic is where records of topic that failed every retry go.
func DeadLetterTopic(topic string) string { return topic + DeadLetterSuffix }

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// CheckTopic reports whether name is a legal Kafka topic name: 1 to 249
// characters of [a-zA-Z0-9._-], and not "." or "..". Send and the config
// check names with it, so a typo fails at once instead of after the
// producer's retries.
func CheckTopic(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case len(name) > maxTopicLen:
		return fmt.Errorf("topic name is %d characters, the limit is %d", len(name), maxTopicLen)
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !topicByte[c] {
			return fmt.Errorf("topic name %q has %q at byte %d; only letters, digits, '.', '_' and '-' are allowed", name, c, i)
		}
	}
	return nil
}

// topicByte marks the bytes a topic name may hold; Send checks every
// record's topic, so this is a table rather than a chain of comparisons.
var topicByte = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") {
		t[c] = true
	}
	return t
}()
