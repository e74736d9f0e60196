// Package mq is gochat's Kafka layer on franz-go: a producer, consumer
// groups with at-least-once delivery, retries and a dead-letter topic, and
// topic administration, as one Client per process.
//
// # Producing
//
// Send queues a Message (franz-go's kgo.Record, so nothing is copied) and
// calls back once the brokers have it; SendSync waits. The producer is idempotent with acks=all, so a retry
// after a timeout or a leader change can neither duplicate nor reorder
// records of a partition; records are batched for a few milliseconds and
// compressed with lz4. A bad record (no topic, an illegal name, larger
// than producer.maxRecordBytes) fails at once with a VALIDATION error,
// before it costs a round trip. On Close the producer is flushed within
// the stop ctx; a record that could still not be delivered is reported to
// its callback with ErrClosed and counted in mq.produce.failed. The
// sender's trace travels in a W3C traceparent header.
//
// # Consuming
//
// Subscribe(group, topics, handler) adds a group member. Each assigned
// partition has one worker, so records of a partition are handled one at
// a time and in order, while partitions run concurrently up to
// consumer.concurrency. A record's offset is marked for commit only after
// its handler returned nil (or it was dead-lettered); marks are committed
// every consumer.commitInterval, before partitions are revoked in a
// rebalance and on Stop. Lost partitions (this member was dropped from
// the group) are not committed. Rebalances wait while a poll's records
// are being queued (franz-go's BlockRebalanceOnPoll) and a revoked
// partition's worker is fenced before its commit, so no record of a
// partition can be marked once the partition has moved. A crash therefore
// causes duplicates (records handled since the last commit), never loss.
//
// A failing record is retried with jittered exponential backoff up to
// consumer.maxRetries times, then sent to "<topic>.dlq" with headers
// naming the error, the attempts and the original topic, partition and
// offset, and its partition moves on. With dead-lettering off the record
// is retried until it succeeds and its partition waits. A handler that
// panics counts as failing.
//
// Stop (and Client.Close) stops fetching, lets handlers in flight finish
// (their ctx is cancelled shortly before the stop ctx ends), commits and
// leaves the group, so the partitions move to the other members at once.
//
// # Failure
//
// New, and the fx module's start, make one metadata request bounded by
// connectTimeout: unreachable brokers or refused credentials fail the
// start with a CONNECTION *lifecycle.InfraError naming the brokers (or
// the SASL user), never a password. After that, franz-go reconnects and
// retries on its own: a leader move or a broker loss stalls producers and
// consumers for about one metadata refresh (metadataMinAge, 1s). The
// health checker "mq" makes a metadata request each time it runs.
//
// # Configuration
//
// Config is the "mq" component. README.md lists every key with its
// default and whether Client.Update applies it live (retries, backoff,
// dead-lettering, paused topics, franz-go's log level, new topics) or
// only at the next start (brokers, security, producer and group settings).
package mq
