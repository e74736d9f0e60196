package lifecycle

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Identity names one running instance of a service. It is decided in phase 1
// (flags, then environment) and never changes while the process runs.
type Identity struct {
	Service  string // DNS label, e.g. "im-repo"
	Env      string // one of the known envs: dev, test, staging, prod (+ IMINFRA_ENVS)
	Instance string // unique per process; defaults to "<hostname>-<pid>"
	Version  string // free text build version; "dev" when unset
}

// Environment variables read by LoadIdentity.
const (
	EnvService  = "IMINFRA_SERVICE"
	EnvEnv      = "IMINFRA_ENV"
	EnvInstance = "IMINFRA_INSTANCE"
	EnvVersion  = "IMINFRA_VERSION"
	// EnvExtraEnvs is a comma-separated list of extra env names (DNS labels)
	// accepted besides the built-in ones, e.g. "canary,perf".
	EnvExtraEnvs = "IMINFRA_ENVS"
)

// knownEnvs are the env names accepted without IMINFRA_ENVS.
var knownEnvs = []string{"dev", "test", "staging", "prod"}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// instanceRe allows the characters that are safe in an etcd key and a metric label.
var instanceRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$`)

// LoadIdentity reads the identity from args (-service, -env, -instance,
// -version; unknown flags are ignored so a service can parse its own) and
// falls back to the IMINFRA_* variables read through getenv. env defaults to
// "dev". The result is validated.
func LoadIdentity(args []string, getenv func(string) string) (Identity, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	e := Environ{Args: args, Getenv: getenv}
	pick := func(flag, env, def string) string {
		if v := e.Lookup(flag, env); v != "" {
			return v
		}
		return def
	}
	id := Identity{
		Service:  pick("service", EnvService, ""),
		Env:      pick("env", EnvEnv, "dev"),
		Version:  pick("version", EnvVersion, "dev"),
		Instance: pick("instance", EnvInstance, ""),
	}
	if id.Instance == "" {
		id.Instance = defaultInstance()
	}
	return id, id.validate(extraEnvs(getenv(EnvExtraEnvs)))
}

// Validate checks the identity as LoadIdentity does: the built-in envs plus
// those the process's IMINFRA_ENVS lists.
func (id Identity) Validate() error { return id.validate(extraEnvs(os.Getenv(EnvExtraEnvs))) }

func (id Identity) validate(extra []string) error {
	if id.Service == "" {
		return ValidationError("lifecycle", "service", "service name is required (-service or "+EnvService+")")
	}
	if !dnsLabel.MatchString(id.Service) {
		return ValidationError("lifecycle", "service", fmt.Sprintf("%q is not a DNS label (lowercase letters, digits, '-', at most 63)", id.Service))
	}
	if !slices.Contains(knownEnvs, id.Env) && !slices.Contains(extra, id.Env) {
		return ValidationError("lifecycle", "env", fmt.Sprintf("unknown env %q: want one of %s or a name listed in %s", id.Env, strings.Join(knownEnvs, ", "), EnvExtraEnvs))
	}
	if !instanceRe.MatchString(id.Instance) {
		return ValidationError("lifecycle", "instance", fmt.Sprintf("%q is not a valid instance id (letters, digits, '.', '_', '-', at most 128)", id.Instance))
	}
	return nil
}

// IsDev reports whether the identity runs in the dev env.
func (id Identity) IsDev() bool { return id.Env == "dev" }

func extraEnvs(list string) []string {
	var out []string
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); dnsLabel.MatchString(e) {
			out = append(out, e)
		}
	}
	return out
}

func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	host = strings.Map(func(r rune) rune {
		if r == '.' || r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '-'
	}, host)
	host = strings.Trim(host, ".-_")
	// Keep room for "-<pid>" inside the 128 characters instanceRe allows; a
	// long FQDN must not make the default identity invalid.
	if len(host) > maxHostPart {
		host = strings.TrimRight(host[:maxHostPart], ".-_")
	}
	if host == "" {
		host = "host"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// maxHostPart bounds the hostname part of the default instance id.
const maxHostPart = 100
