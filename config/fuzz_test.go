package config_test

import (
	"errors"
	"testing"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// FuzzParse feeds arbitrary documents to Parse: whatever the bytes, it
// returns either a config that validates or a CONFIG/VALIDATION InfraError
// naming the component, and never panics.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"poolSize":20}`, `{"poolsize":1}`, `{"limits":{"maxBytes":-1}}`,
		`{"timeout":"5s"}`, `{"timeout":5}`, `{"password":"${HOME}"}`, `{"tags":{"a":"b"}}`,
		`[]`, `null`, `"x"`, `{"poolSize":1e400}`, `{"limits":[1]}`, `{"tags":{"a":{"b":1}}}`,
		``, `{`, `{} {}`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := config.Parse[testConfig]("cache", config.Layer{Key: serviceKey, Data: doc})
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse returned a config that does not validate: %v", verr)
			}
			return
		}
		var ie *lifecycle.InfraError
		if !errors.As(err, &ie) {
			t.Fatalf("not an InfraError: %T %v", err, err)
		}
		if ie.Component != "cache" || (ie.Type != lifecycle.TypeConfig && ie.Type != lifecycle.TypeValidation) {
			t.Fatalf("unexpected error: %#v", ie)
		}
	})
}
