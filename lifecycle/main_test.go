package lifecycle

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// aggregator's checker goroutines and the admin server's serve loop must all
// have an owner that ends them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
