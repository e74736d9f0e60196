package mq_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if runChildConsumer() {
		return
	}
	goleak.VerifyTestMain(m)
}
