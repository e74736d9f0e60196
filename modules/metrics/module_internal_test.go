package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/lifecycle"
)

// TestMountRefusesAClash: a path another component already serves on the
// admin server is a CONFIG error naming the field, not a ServeMux panic.
func TestMountRefusesAClash(t *testing.T) {
	admin := lifecycle.NewAdminServer(lifecycle.AdminOptions{}, nil, nil, nil)
	admin.Handle("GET /ops/metrics", http.NotFoundHandler())
	err := mount(admin, "/ops/metrics", http.NotFoundHandler())
	var ie *lifecycle.InfraError
	require.True(t, errors.As(err, &ie), "%v", err)
	assert.Equal(t, lifecycle.TypeConfig, ie.Type)
	assert.Equal(t, "path", ie.Field)
	require.NoError(t, mount(admin, "/metrics", http.NotFoundHandler()))
}

func TestHandlerBeforeStart(t *testing.T) {
	p, err := newProvider()
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "not started")
}
