package devstack

import (
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIsAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = net.Listen("tcp", l.Addr().String())
	require.Error(t, err)
	assert.True(t, isAddrInUse(err))
	assert.False(t, isAddrInUse(errors.New("permission denied")))
}

// Ports for servers that restart come from below the ephemeral range, so
// no client's outgoing connection holds one when its server comes back.
func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	if lo <= minPort {
		t.Skip("no ephemeral range to stay below on this system")
	}
	for range 20 {
		p, err := freePort()
		require.NoError(t, err)
		assert.GreaterOrEqual(t, p, minPort)
		assert.Less(t, p, lo)
	}
}
