package metrics

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	// The SDK's own resources use this semconv version; a different one
	// has another schema URL, and resource.Merge refuses to merge those.
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/gochat/im-infra/lifecycle"
)

// newResource describes the process to every metric (target_info) and
// span: the SDK's defaults (telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES)
// overlaid with the identity, which wins.
func newResource(id lifecycle.Identity) (*resource.Resource, error) {
	var attrs []attribute.KeyValue
	add := func(kv attribute.KeyValue) {
		if kv.Value.AsString() != "" {
			attrs = append(attrs, kv)
		}
	}
	add(semconv.ServiceName(id.Service))
	add(semconv.DeploymentEnvironmentNameKey.String(id.Env))
	add(semconv.ServiceInstanceID(id.Instance))
	add(semconv.ServiceVersion(id.Version))
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, attrs...))
	if err != nil {
		return nil, lifecycle.InternalError(ModuleName, "resource", "cannot merge the identity into the SDK's default resource", err)
	}
	return res, nil
}
