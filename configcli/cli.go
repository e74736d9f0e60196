package configcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
	"github.com/gochat/im-infra/modules/coord"
)

// Exit codes of every command.
const (
	ExitOK         = 0 // done
	ExitInvalid    = 1 // a document failed validation, or a write was refused; nothing was written
	ExitUsage      = 2 // bad flags or arguments
	ExitConnection = 3 // etcd unreachable, too slow, or it refused the credentials or the permission
)

// Environment variables of the flags that are not etcd's (those are coord's:
// coord.EnvEndpoints, coord.EnvUsername, ...).
const (
	EnvTimeout     = "IMINFRA_CONFIG_CLI_TIMEOUT"
	EnvOutput      = "IMINFRA_CONFIG_CLI_OUTPUT"
	EnvAuditPrefix = "IMINFRA_CONFIG_AUDIT_PREFIX"
	EnvMaxTxnOps   = "IMINFRA_ETCD_MAX_TXN_OPS"
	// EnvRootPassword is read by `auth init` for the root user it creates.
	EnvRootPassword = "IMINFRA_ETCD_ROOT_PASSWORD"
)

// Defaults of the global flags.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultAuditPrefix = "/audit/config/"
	// DefaultMaxTxnOps is etcd's default --max-txn-ops: the most puts (and,
	// separately, the most comparisons) one transaction may hold.
	DefaultMaxTxnOps = 128
)

// CLI is a config-cli built with a set of components. Main is the usual way
// to run one; CLI.Run is the same without the process around it (tests).
type CLI struct {
	// Name is the program name in help and messages; default "config-cli".
	Name string
	// Components are the config components the CLI validates against.
	Components []Component
	In         io.Reader
	Out, Err   io.Writer
}

// Main runs a config CLI that knows components on the process's arguments,
// and exits with its exit code. A service builds its own CLI with it:
//
//	func main() {
//		configcli.Main(
//			configcli.ComponentOf[clog.Config]("clog"),
//			configcli.ComponentOf[fxinfra.AdminConfig]("admin"),
//			configcli.ComponentOf[myservice.Config]("myservice"),
//		)
//	}
//
// SIGINT and SIGTERM end a running command (watch) cleanly.
func Main(components ...Component) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := CLI{
		Name:       filepath.Base(os.Args[0]),
		Components: components,
		In:         os.Stdin,
		Out:        os.Stdout,
		Err:        os.Stderr,
	}.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// exitError is how a command fails: the exit code, the message and, for a
// validation failure, every problem found.
type exitError struct {
	code     int
	msg      string
	problems []problem
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, a ...any) error {
	return &exitError{code: ExitUsage, msg: fmt.Sprintf(format, a...)}
}

func invalidErr(format string, a ...any) error {
	return &exitError{code: ExitInvalid, msg: fmt.Sprintf(format, a...)}
}

// runner holds what one run of the CLI shares between its commands.
type runner struct {
	name     string
	reg      registry
	in       io.Reader
	out, err io.Writer
	g        globals
	// keyIsEtcdKey: the running command has its own --key (an etcd key),
	// which shadows the global --key (the TLS key).
	keyIsEtcdKey bool
	cmdPath      string
	// client, when set, is used instead of connecting (and not closed).
	client *clientv3.Client
}

// globals are the global flags, after their environment variables.
type globals struct {
	endpoints    string
	user         string
	password     string
	cacert       string
	cert         string
	key          string
	env          string
	service      string
	timeout      time.Duration
	output       string
	allowUnknown bool
	auditPrefix  string
	maxTxnOps    int
}

// envBindings ties global flags to the variables read when a flag is not given.
var envBindings = []struct{ flag, env string }{
	{"endpoints", coord.EnvEndpoints},
	{"user", coord.EnvUsername},
	{"password", coord.EnvPassword},
	{"cacert", coord.EnvTLSCA},
	{"cert", coord.EnvTLSCert},
	{"key", coord.EnvTLSKey},
	{"env", lifecycle.EnvEnv},
	{"service", lifecycle.EnvService},
	{"timeout", EnvTimeout},
	{"output", EnvOutput},
	{"audit-prefix", EnvAuditPrefix},
	{"max-txn-ops", EnvMaxTxnOps},
}

// Run runs the CLI on args (without the program name) and returns the exit
// code. Errors go to Err as one line each (a list for validation problems),
// never a stack trace.
func (c CLI) Run(ctx context.Context, args []string) int { return c.run(ctx, args, nil) }

// run is Run, on client instead of a connection of its own when client is
// not nil (tests: see export_test.go).
func (c CLI) run(ctx context.Context, args []string, client *clientv3.Client) int {
	if c.Name == "" {
		c.Name = "config-cli"
	}
	if c.In == nil {
		c.In = strings.NewReader("")
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Err == nil {
		c.Err = io.Discard
	}
	reg, err := newRegistry(c.Components)
	if err != nil {
		fmt.Fprintf(c.Err, "%s: %v\n", c.Name, err)
		return ExitUsage
	}
	r := &runner{name: c.Name, reg: reg, in: c.In, out: c.Out, err: c.Err, client: client}
	root := r.rootCommand()
	root.SetArgs(args)
	root.SetIn(c.In)
	root.SetOut(c.Out)
	root.SetErr(c.Err)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// cobra's own errors: unknown command, unknown flag, bad arguments.
		ee = &exitError{code: ExitUsage, msg: err.Error()}
	}
	r.report(cmd, ee)
	return ee.code
}

// report prints a failure: JSON on stdout with --output json (so scripts
// read one document), and always a readable message on stderr.
func (r *runner) report(cmd *cobra.Command, ee *exitError) {
	if r.g.output == "json" && ee.code != ExitUsage {
		r.writeJSON(map[string]any{"ok": false, "exitCode": ee.code, "error": ee.msg, "problems": ee.problems})
	}
	for _, p := range ee.problems {
		fmt.Fprintf(r.err, "  %s\n", p)
	}
	fmt.Fprintf(r.err, "%s: %s\n", r.name, ee.msg)
	if ee.code == ExitUsage && cmd != nil {
		fmt.Fprintf(r.err, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
}

func (r *runner) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   r.name,
		Short: "Manage the im-infra config center in etcd safely",
		Long: `Every config document in etcd goes through this tool, checked by the same
typed configs the services use: defaults, then /config/{env}/global/{component},
then /config/{env}/{service}/{component}, strict JSON, then Validate().
Every write is one etcd transaction that also writes an audit record.

Known components: ` + strings.Join(r.reg.names(), ", ") + `

Exit codes: 0 ok, 1 validation failure or refused write (nothing written),
2 usage, 3 etcd unreachable, too slow, or credentials/permission refused.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return r.resolveGlobals(cmd) },
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr("%v", err) })

	f := root.PersistentFlags()
	f.StringVar(&r.g.endpoints, "endpoints", "", "etcd endpoints, comma-separated (env "+coord.EnvEndpoints+")")
	f.StringVar(&r.g.user, "user", "", "etcd user (env "+coord.EnvUsername+")")
	f.StringVar(&r.g.password, "password", "", "etcd password; prefer the variable, flags show in ps (env "+coord.EnvPassword+")")
	f.StringVar(&r.g.cacert, "cacert", "", "PEM file of the CAs of etcd's server certificates (env "+coord.EnvTLSCA+")")
	f.StringVar(&r.g.cert, "cert", "", "client certificate PEM file for mutual TLS (env "+coord.EnvTLSCert+")")
	f.StringVar(&r.g.key, "key", "", "client key PEM file for mutual TLS; on commands whose --key names an etcd key, use --tls-key (env "+coord.EnvTLSKey+")")
	f.StringVar(&r.g.key, "tls-key", "", "same as --key: the client key PEM file for mutual TLS")
	f.StringVar(&r.g.env, "env", "", "environment: dev, test, staging, prod or one listed in "+lifecycle.EnvExtraEnvs+" (env "+lifecycle.EnvEnv+")")
	f.StringVar(&r.g.service, "service", "", "service name, or \"global\" for the env-wide layer (env "+lifecycle.EnvService+")")
	f.DurationVar(&r.g.timeout, "timeout", DefaultTimeout, "bound on each etcd request (env "+EnvTimeout+")")
	f.StringVar(&r.g.output, "output", "text", "text or json (env "+EnvOutput+")")
	f.BoolVar(&r.g.allowUnknown, "allow-unknown", false, "accept documents of components this build does not know (checked only as JSON objects)")
	f.StringVar(&r.g.auditPrefix, "audit-prefix", DefaultAuditPrefix, "where audit records are written (env "+EnvAuditPrefix+")")
	f.IntVar(&r.g.maxTxnOps, "max-txn-ops", DefaultMaxTxnOps, "etcd's --max-txn-ops: a write that needs more is refused, never split (env "+EnvMaxTxnOps+")")

	root.AddCommand(
		r.initCommand(),
		r.importCommand(),
		r.exportCommand(),
		r.validateCommand(),
		r.diffCommand(),
		r.getCommand(),
		r.setCommand(),
		r.deleteCommand(),
		r.watchCommand(),
		r.historyCommand(),
		r.rollbackCommand(),
		r.encryptCommand(),
		r.auditCommand(),
		r.authCommand(),
	)
	return root
}

// resolveGlobals fills every global flag that was not given from its
// environment variable and checks the result.
func (r *runner) resolveGlobals(cmd *cobra.Command) error {
	// The root's own flag objects: a command's --key (an etcd key) shadows
	// the global --key (the TLS key) in cmd.Flags().
	flags := cmd.Root().PersistentFlags()
	r.keyIsEtcdKey = cmd.LocalNonPersistentFlags().Lookup("key") != nil
	r.cmdPath = cmd.CommandPath()
	for _, b := range envBindings {
		f := flags.Lookup(b.flag)
		if f == nil || f.Changed || (b.flag == "key" && flags.Lookup("tls-key").Changed) {
			continue
		}
		v, ok := os.LookupEnv(b.env)
		if !ok || strings.TrimSpace(v) == "" {
			continue
		}
		if b.flag != "password" {
			v = strings.TrimSpace(v)
		}
		if err := f.Value.Set(v); err != nil {
			return usageErr("%s=%q: %v", b.env, v, err)
		}
	}
	switch r.g.output {
	case "text", "json":
	default:
		return usageErr("--output %q: want text or json", r.g.output)
	}
	if r.g.timeout <= 0 {
		return usageErr("--timeout must be positive, got %s", r.g.timeout)
	}
	if r.g.maxTxnOps < 2 {
		return usageErr("--max-txn-ops must be at least 2 (one key and its audit record), got %d", r.g.maxTxnOps)
	}
	if !strings.HasPrefix(r.g.auditPrefix, "/") || strings.HasPrefix(r.g.auditPrefix, "/config/") {
		return usageErr("--audit-prefix %q must start with / and lie outside /config/", r.g.auditPrefix)
	}
	if !strings.HasSuffix(r.g.auditPrefix, "/") {
		r.g.auditPrefix += "/"
	}
	return nil
}

// requireEnv returns --env, checked like a service's identity.
func (r *runner) requireEnv() (string, error) {
	if r.g.env == "" {
		return "", usageErr("no environment: pass --env or set %s", lifecycle.EnvEnv)
	}
	if err := checkEnv(r.g.env); err != nil {
		return "", err
	}
	return r.g.env, nil
}

func checkEnv(env string) error {
	id := lifecycle.Identity{Service: "config-cli", Env: env, Instance: "config-cli"}
	if err := id.Validate(); err != nil {
		var ie *lifecycle.InfraError
		if errors.As(err, &ie) {
			return usageErr("--env: %s", ie.Message)
		}
		return usageErr("--env: %v", err)
	}
	return nil
}

// requireService returns --service: a DNS label or "global".
func (r *runner) requireService() (string, error) {
	if r.g.service == "" {
		return "", usageErr("no service: pass --service (or \"global\") or set %s", lifecycle.EnvService)
	}
	if !nameRe.MatchString(r.g.service) {
		return "", usageErr("--service %q is not a DNS label (lowercase letters, digits, '-')", r.g.service)
	}
	return r.g.service, nil
}

// configKey resolves the document a command works on: --key, or --env,
// --service and the component argument. rest are the arguments left.
func (r *runner) configKey(cmd *cobra.Command, args []string, keyFlag string) (key string, rest []string, err error) {
	if keyFlag != "" {
		if cmd.Flags().Changed("service") {
			return "", nil, usageErr("give either --key or --service with a component, not both")
		}
		if _, _, _, ok := parseConfigKey(keyFlag); !ok {
			return "", nil, usageErr("--key %q is not a config key /config/{env}/{service}/{component}", keyFlag)
		}
		return keyFlag, args, nil
	}
	if len(args) == 0 {
		return "", nil, usageErr("name a component (with --env and --service) or pass --key")
	}
	env, err := r.requireEnv()
	if err != nil {
		return "", nil, err
	}
	svc, err := r.requireService()
	if err != nil {
		return "", nil, err
	}
	if !nameRe.MatchString(args[0]) {
		return "", nil, usageErr("component %q is not a DNS label", args[0])
	}
	return config.Key(env, svc, args[0]), args[1:], nil
}

// parseConfigKey splits /config/{env}/{service}/{component}.
func parseConfigKey(key string) (env, service, component string, ok bool) {
	rest, found := strings.CutPrefix(key, "/config/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", false
	}
	for _, p := range parts {
		if !nameRe.MatchString(p) {
			return "", "", "", false
		}
	}
	return parts[0], parts[1], parts[2], true
}

// component looks up the component of a config key; ok is false for a
// component this build does not know.
func (r *runner) component(key string) (Component, bool) {
	_, _, name, ok := parseConfigKey(key)
	if !ok {
		return Component{}, false
	}
	return r.reg.lookup(name)
}

func (r *runner) jsonOutput() bool { return r.g.output == "json" }

func (r *runner) writeJSON(v any) {
	enc := json.NewEncoder(r.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// printf writes to stdout in text mode only.
func (r *runner) printf(format string, a ...any) {
	if !r.jsonOutput() {
		fmt.Fprintf(r.out, format, a...)
	}
}

// notef writes a note to stderr (progress, warnings): stdout stays the
// command's result.
func (r *runner) notef(format string, a ...any) { fmt.Fprintf(r.err, format+"\n", a...) }

// run adapts a command body so that any error it returns becomes an
// exitError (a plain error is a refusal, exit 1).
func run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return ee
		}
		return &exitError{code: ExitInvalid, msg: err.Error()}
	}
}
