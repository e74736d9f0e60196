package mq

import (
	"context"
	"time"

	"github.com/gochat/im-infra/lifecycle"
)

// Checker reports the cluster's health as component "mq": a metadata
// request bounded by connectTimeout and the check's ctx. Healthy when a
// broker answers, Unhealthy when none does or the Client is not running.
func (c *Client) Checker() lifecycle.Checker {
	return lifecycle.CheckerFunc(ModuleName, c.check)
}

func (c *Client) check(ctx context.Context) lifecycle.Status {
	adm := c.admin()
	if adm == nil {
		_, err := c.producerClient()
		return lifecycle.Status{State: lifecycle.Unhealthy, Message: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Load().ConnectTimeout.Std())
	defer cancel()
	began := time.Now()
	meta, err := adm.BrokerMetadata(fresh(ctx))
	if err != nil {
		return lifecycle.Status{State: lifecycle.Unhealthy, Message: "no broker answered a metadata request: " + err.Error()}
	}
	details := map[string]any{
		"brokers":    len(meta.Brokers),
		"controller": meta.Controller,
		"latency_ms": time.Since(began).Milliseconds(),
	}
	var consumers, paused []string
	for _, s := range c.snapshotConsumers() {
		consumers = append(consumers, s.group)
		paused = append(paused, s.Paused()...)
	}
	if len(consumers) > 0 {
		details["consumer_groups"] = consumers
	}
	if len(paused) > 0 {
		details["paused_topics"] = paused
	}
	return lifecycle.Status{State: lifecycle.Healthy, Details: details}
}
