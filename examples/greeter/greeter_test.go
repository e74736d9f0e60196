package greeter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/goleak"

	"github.com/gochat/im-infra/examples/greeter"
	"github.com/gochat/im-infra/fxinfratest"
	"github.com/gochat/im-infra/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The module on the test kit: config from etcd, a live change, health and
// the periodic greeting in the log.
func TestGreeterOnTheTestKit(t *testing.T) {
	var (
		g   *greeter.Greeter
		agg *lifecycle.Aggregator
	)
	app := fxinfratest.New(t,
		fxinfratest.WithConfig(greeter.ModuleName, `{"message":"hi","interval":"100ms"}`),
		fxinfratest.WithFx(greeter.Module, fx.Populate(&g, &agg)),
	)
	got, err := g.Greet("bob")
	require.NoError(t, err)
	assert.Equal(t, "hi, bob", got)
	app.Logs.Eventually(t, "hi", 2*time.Second)

	app.Put(t, greeter.ModuleName, `{"message":"hello from etcd","interval":"100ms"}`)
	got, err = g.Greet("bob")
	require.NoError(t, err)
	assert.Equal(t, "hello from etcd, bob", got, "the change applies live")
	app.Logs.Eventually(t, "hello from etcd", 2*time.Second)

	rep := agg.Check(context.Background())
	assert.Equal(t, lifecycle.Healthy, rep.Checks[greeter.ModuleName].State)
}

func TestGreeterBadInput(t *testing.T) {
	g, err := greeter.New(greeter.Config{}.Defaults(), nil)
	require.NoError(t, err)
	for _, name := range []string{"", string(make([]byte, 65))} {
		_, err := g.Greet(name)
		var ie *lifecycle.InfraError
		require.True(t, errors.As(err, &ie))
		assert.Equal(t, lifecycle.TypeValidation, ie.Type)
		assert.Equal(t, "name", ie.Field)
		assert.Equal(t, greeter.ModuleName, ie.Component)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*greeter.Config)
		field string
	}{
		{"defaults", func(*greeter.Config) {}, ""},
		{"empty message", func(c *greeter.Config) { c.Message = " " }, "message"},
		{"interval too short", func(c *greeter.Config) { c.Interval = 5e6 }, "interval"},
		{"negative interval", func(c *greeter.Config) { c.Interval = -1 }, "interval"},
		{"no names", func(c *greeter.Config) { c.MaxName = 0 }, "maxName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := greeter.Config{}.Defaults()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				assert.NoError(t, err)
				return
			}
			var ie *lifecycle.InfraError
			require.True(t, errors.As(err, &ie))
			assert.Equal(t, tt.field, ie.Field)
		})
	}
}

// A refused document keeps the last valid config; the app says why.
func TestGreeterRefusedConfigKeepsTheLastValid(t *testing.T) {
	var g *greeter.Greeter
	app := fxinfratest.New(t, fxinfratest.WithFx(greeter.Module, fx.Populate(&g)))
	err := app.TryPut(greeter.ModuleName, `{"interval":"1ms"}`)
	assert.ErrorIs(t, err, lifecycle.ErrValidation)
	got, err := g.Greet("ann")
	require.NoError(t, err)
	assert.Equal(t, "hello, ann", got)
	entry := app.Logs.Require(t, "config refused")
	assert.Contains(t, entry.ContextMap()["error"], `field "interval"`)
}
