package lifecycle

import (
	"os"
	"strings"
)

// Environ is where a process reads its bootstrap settings: command-line
// flags first, then environment variables. Everything im-infra reads before
// the config center is reachable (identity, etcd endpoints, the snapshot
// path, the admin address) goes through it, so a test can hand an app its
// own settings without touching the process environment, and apps in one
// process stay independent.
type Environ struct {
	// Args are the command-line arguments without the program name.
	Args []string
	// Getenv reads an environment variable; nil reads nothing.
	Getenv func(key string) string
}

// ProcessEnviron is the running process's flags and environment.
func ProcessEnviron() Environ { return Environ{Args: os.Args[1:], Getenv: os.Getenv} }

// MapEnviron is an Environ with no flags that reads variables from m.
func MapEnviron(m map[string]string) Environ {
	return Environ{Getenv: func(k string) string { return m[k] }}
}

// Env returns the environment variable key, trimmed.
func (e Environ) Env(key string) string {
	if e.Getenv == nil {
		return ""
	}
	return strings.TrimSpace(e.Getenv(key))
}

// Lookup returns the value of the flag -name (or --name, -name=v), else the
// environment variable env, else "". Unknown flags are ignored, so a
// service can parse its own.
func (e Environ) Lookup(name, env string) string {
	if v, ok := flagValue(e.Args, name); ok {
		return strings.TrimSpace(v)
	}
	return e.Env(env)
}

// flagValue finds -name v, -name=v, --name v or --name=v in args, stopping
// at "--" as package flag does; the last occurrence wins.
func flagValue(args []string, name string) (string, bool) {
	var (
		val   string
		found bool
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		n := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.HasPrefix(n, "-") {
			continue
		}
		if k, v, ok := strings.Cut(n, "="); ok {
			if k == name {
				val, found = v, true
			}
			continue
		}
		if n == name && i+1 < len(args) {
			val, found = args[i+1], true
			i++
		}
	}
	return val, found
}
