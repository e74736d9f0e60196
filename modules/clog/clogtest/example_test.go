package clogtest_test

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/gochat/im-infra/modules/clog/clogtest"
)

// A logger whose entries a test can read back. To observe a whole fx app,
// add logs.Option() to it (fxinfratest does, as app.Logs).
func ExampleNew() {
	log, logs := clogtest.New()
	log.Info("order stored", zap.String("id", "o-1"))
	log.Debug("cache miss")
	fmt.Println(logs.Messages(), logs.Count("order"))
	// Output: [order stored cache miss] 1
}
