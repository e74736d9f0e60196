package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

type peer struct {
	Name   string `json:"name"`
	Weight int    `json:"weight"`
}

type route struct {
	Weight  int             `json:"weight"`
	Timeout config.Duration `json:"timeout"`
}

type mergeConfig struct {
	Peers  []peer            `json:"peers"`
	Ports  []int             `json:"ports"`
	Routes map[string]route  `json:"routes"`
	Labels map[string]string `json:"labels"`
	Limits struct {
		Max int `json:"max"`
		Min int `json:"min"`
	} `json:"limits"`
	TLS  *tlsConfig `json:"tls"`
	Name string     `json:"name"`
}

type tlsConfig struct {
	CAFile   string `json:"caFile"`
	Insecure bool   `json:"insecure"`
}

func (mergeConfig) Defaults() mergeConfig {
	c := mergeConfig{
		Peers:  []peer{{Name: "default", Weight: 1}},
		Ports:  []int{80},
		Routes: map[string]route{"a": {Weight: 1, Timeout: config.Duration(time.Second)}},
		Labels: map[string]string{"zone": "z1"},
		TLS:    &tlsConfig{CAFile: "/etc/ca.pem"},
		Name:   "n",
	}
	c.Limits.Max, c.Limits.Min = 10, 1
	return c
}

func (mergeConfig) Validate() error { return nil }

// TestParseMergeRules pins the merge rules the README documents: objects and
// maps merge key by key, recursively; arrays and scalars replace whole; null
// and an empty document contribute nothing.
func TestParseMergeRules(t *testing.T) {
	def := mergeConfig{}.Defaults()
	tests := []struct {
		name           string
		global, svc    string
		want           func(c *mergeConfig)
		wantErrField   string
		wantErrContain string
	}{
		{name: "array of objects replaces whole, no field leaks from below",
			global: `{"peers":[{"name":"a","weight":5}]}`, svc: `{"peers":[{"name":"b"}]}`,
			want: func(c *mergeConfig) { c.Peers = []peer{{Name: "b"}} }},
		{name: "array of scalars replaces whole",
			global: `{"ports":[1,2,3]}`, svc: `{"ports":[4]}`,
			want: func(c *mergeConfig) { c.Ports = []int{4} }},
		{name: "empty array replaces whole",
			svc:  `{"ports":[]}`,
			want: func(c *mergeConfig) { c.Ports = []int{} }},
		{name: "map of objects merges key by key, recursively",
			global: `{"routes":{"b":{"weight":3}}}`, svc: `{"routes":{"a":{"weight":2}}}`,
			want: func(c *mergeConfig) {
				c.Routes = map[string]route{"a": {Weight: 2, Timeout: config.Duration(time.Second)}, "b": {Weight: 3}}
			}},
		{name: "map of scalars merges keys",
			global: `{"labels":{"rack":"r1"}}`, svc: `{"labels":{"zone":"z2"}}`,
			want: func(c *mergeConfig) { c.Labels = map[string]string{"zone": "z2", "rack": "r1"} }},
		{name: "nested object merges",
			global: `{"limits":{"max":20}}`, svc: `{"limits":{"min":2}}`,
			want: func(c *mergeConfig) { c.Limits.Max, c.Limits.Min = 20, 2 }},
		{name: "pointer to object merges",
			svc:  `{"tls":{"insecure":true}}`,
			want: func(c *mergeConfig) { c.TLS = &tlsConfig{CAFile: "/etc/ca.pem", Insecure: true} }},
		{name: "scalar replaces",
			global: `{"name":"g"}`, svc: `{"name":"s"}`,
			want: func(c *mergeConfig) { c.Name = "s" }},
		{name: "null field keeps the value below",
			global: `{"name":"g","peers":[{"name":"x"}]}`, svc: `{"name":null,"peers":null,"routes":{"a":null}}`,
			want: func(c *mergeConfig) { c.Name = "g"; c.Peers = []peer{{Name: "x"}} }},
		{name: "null and empty documents contribute nothing",
			global: `null`, svc: "  ",
			want: func(*mergeConfig) {}},
		{name: "empty object changes nothing",
			global: `{}`, svc: `{"limits":{}}`,
			want: func(*mergeConfig) {}},
		{name: "unknown field inside an array element is named",
			svc: `{"peers":[{"name":"a","wieght":1}]}`, wantErrField: "peers.wieght"},
		{name: "wrong case inside a map entry is unknown",
			svc: `{"routes":{"a":{"Weight":1}}}`, wantErrField: "routes.a.Weight"},
		{name: "bad duration inside a map entry names the field",
			svc: `{"routes":{"a":{"timeout":"soon"}}}`, wantErrField: "routes.a.timeout", wantErrContain: "duration"},
		{name: "object where an array belongs",
			svc: `{"ports":{"a":1}}`, wantErrField: "ports", wantErrContain: "wrong type"},
		{name: "array where an object belongs",
			svc: `{"limits":[1]}`, wantErrField: "limits", wantErrContain: "want an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers []config.Layer
			if tt.global != "" {
				layers = append(layers, config.Layer{Key: "/config/test/global/m", Data: []byte(tt.global)})
			}
			if tt.svc != "" {
				layers = append(layers, config.Layer{Key: "/config/test/svc/m", Data: []byte(tt.svc)})
			}
			got, err := config.Parse[mergeConfig]("m", layers...)
			if tt.wantErrField != "" {
				var ie *lifecycle.InfraError
				require.ErrorAs(t, err, &ie)
				assert.Equal(t, lifecycle.TypeConfig, ie.Type)
				assert.Equal(t, tt.wantErrField, ie.Field)
				assert.Contains(t, err.Error(), tt.wantErrContain)
				return
			}
			require.NoError(t, err)
			want := mergeConfig{}.Defaults()
			tt.want(&want)
			assert.Equal(t, want, got)
		})
	}
	assert.Equal(t, mergeConfig{}.Defaults(), def, "merging never writes into the defaults")
}

// TestParseDoesNotShareMaps checks that a config returned by Parse owns its
// maps and pointers: changing it cannot reach another Parse's result.
func TestParseDoesNotShareMaps(t *testing.T) {
	layer := config.Layer{Key: "/config/test/svc/m", Data: []byte(`{"routes":{"a":{"weight":2}},"tls":{"insecure":true}}`)}
	a, err := config.Parse[mergeConfig]("m", layer)
	require.NoError(t, err)
	b, err := config.Parse[mergeConfig]("m", layer)
	require.NoError(t, err)
	a.Routes["z"] = route{}
	a.TLS.CAFile = "changed"
	assert.NotContains(t, b.Routes, "z")
	assert.Equal(t, "/etc/ca.pem", b.TLS.CAFile)
}
