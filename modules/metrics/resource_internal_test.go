package metrics

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	oldsemconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/gochat/im-infra/lifecycle"
)

// TestResourceUsesTheSDKSemconv: the identity's resource carries the
// schema URL of the SDK's default resource. A different semconv version
// would make resource.Merge fail (shown with v1.26.0), and New with it.
func TestResourceUsesTheSDKSemconv(t *testing.T) {
	res, err := newResource(lifecycle.Identity{Service: "orders", Env: "prod", Instance: "orders-1", Version: "2.0.1"})
	require.NoError(t, err)
	assert.Equal(t, resource.Default().SchemaURL(), res.SchemaURL())
	got := map[attribute.Key]string{}
	for _, kv := range res.Attributes() {
		got[kv.Key] = kv.Value.AsString()
	}
	assert.Equal(t, "orders", got["service.name"])
	assert.Equal(t, "prod", got["deployment.environment.name"])
	assert.Equal(t, "orders-1", got["service.instance.id"])
	assert.Equal(t, "2.0.1", got["service.version"])
	assert.Equal(t, "go", got["telemetry.sdk.language"], "the SDK's defaults are kept")

	_, err = resource.Merge(resource.Default(), resource.NewWithAttributes(oldsemconv.SchemaURL, oldsemconv.ServiceName("orders")))
	require.ErrorIs(t, err, resource.ErrSchemaURLConflict, "why the semconv version matters")
}
