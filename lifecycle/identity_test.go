package lifecycle

import (
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadIdentity(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want Identity
	}{
		{
			name: "flags win over env",
			args: []string{"-service", "im-repo", "-env=prod", "--instance", "repo-1", "-version", "v1.2.3"},
			env:  map[string]string{EnvService: "im-logic", EnvEnv: "staging", EnvInstance: "other", EnvVersion: "v0"},
			want: Identity{Service: "im-repo", Env: "prod", Instance: "repo-1", Version: "v1.2.3"},
		},
		{
			name: "env fallback",
			env:  map[string]string{EnvService: "im-logic", EnvEnv: " staging ", EnvInstance: "logic-7", EnvVersion: "abc123"},
			want: Identity{Service: "im-logic", Env: "staging", Instance: "logic-7", Version: "abc123"},
		},
		{
			name: "mixed: flag for service, env for the rest",
			args: []string{"-service=im-task"},
			env:  map[string]string{EnvEnv: "test", EnvInstance: "task-2"},
			want: Identity{Service: "im-task", Env: "test", Instance: "task-2", Version: "dev"},
		},
		{
			name: "unknown flags of the service are ignored",
			args: []string{"-port", "8080", "-verbose", "-service", "im-gateway", "-config=/etc/x", "positional", "-instance", "gw-1"},
			want: Identity{Service: "im-gateway", Env: "dev", Instance: "gw-1", Version: "dev"},
		},
		{
			name: "arguments after -- are positional",
			args: []string{"-service", "im-repo", "-instance", "a", "--", "-service", "other"},
			want: Identity{Service: "im-repo", Env: "dev", Instance: "a", Version: "dev"},
		},
		{
			name: "extra env from IMINFRA_ENVS",
			args: []string{"-service", "im-repo", "-instance", "r1"},
			env:  map[string]string{EnvEnv: "canary", EnvExtraEnvs: "perf, canary"},
			want: Identity{Service: "im-repo", Env: "canary", Instance: "r1", Version: "dev"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadIdentity(tt.args, envMap(tt.env))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestLoadIdentityDefaults(t *testing.T) {
	id, err := LoadIdentity([]string{"-service", "im-repo"}, envMap(nil))
	require.NoError(t, err)
	assert.Equal(t, "dev", id.Env)
	assert.Equal(t, "dev", id.Version)
	assert.True(t, id.IsDev())
	assert.Regexp(t, regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*-[0-9]+$`), id.Instance, "<hostname>-<pid>")
	require.NoError(t, id.Validate())
}

func TestIdentityValidateHonoursExtraEnvs(t *testing.T) {
	id := Identity{Service: "im-repo", Env: "canary", Instance: "i-1"}
	err := id.Validate()
	require.ErrorIs(t, err, ErrValidation)
	t.Setenv(EnvExtraEnvs, "perf, canary")
	require.NoError(t, id.Validate())
}

func TestLoadIdentityInvalid(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantField string
	}{
		{"missing service", nil, nil, "service"},
		{"uppercase service", []string{"-service", "IM-Repo"}, nil, "service"},
		{"service with underscore", []string{"-service", "im_repo"}, nil, "service"},
		{"service ending in dash", []string{"-service", "im-"}, nil, "service"},
		{"unknown env", []string{"-service", "im-repo", "-env", "production"}, nil, "env"},
		{"extra env not listed", []string{"-service", "im-repo"}, map[string]string{EnvEnv: "canary", EnvExtraEnvs: "perf"}, "env"},
		{"bad instance", []string{"-service", "im-repo", "-instance", "repo 1"}, nil, "instance"},
		{"instance starting with dash", []string{"-service", "im-repo", "-instance=-x"}, nil, "instance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadIdentity(tt.args, envMap(tt.env))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrValidation)
			var ie *InfraError
			require.True(t, errors.As(err, &ie))
			assert.Equal(t, "lifecycle", ie.Component)
			assert.Equal(t, tt.wantField, ie.Field)
		})
	}
}

func TestDefaultInstanceIsValid(t *testing.T) {
	assert.Regexp(t, instanceRe, defaultInstance())
}
