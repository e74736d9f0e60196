package configcli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gochat/im-infra/config"
)

func (r *runner) encryptCommand() *cobra.Command {
	var generate bool
	cmd := &cobra.Command{
		Use:   "encrypt",
		Short: "Encrypt a secret read from stdin for a config.Secret field",
		Long: `Read a secret from stdin (one trailing newline is dropped) and print it
encrypted as enc:v1:<base64>, AES-256-GCM with the key in ` + config.EnvConfigKey + `
(the first, if it lists several). Put the result in a config.Secret field;
the service decrypts it with the same key in its environment. The secret is
read from stdin, never from an argument, so it stays out of shell history
and ps. --generate-key prints a new random key instead.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if generate {
				k, err := config.NewSecretKey()
				if err != nil {
					return err
				}
				if r.jsonOutput() {
					r.writeJSON(map[string]any{"ok": true, "key": k})
					return nil
				}
				r.printf("%s\n", k)
				return nil
			}
			// The process environment, as the running modules read it.
			key := os.Getenv(config.EnvConfigKey)
			if strings.TrimSpace(key) == "" {
				return usageErr("%s is not set: set it to the key the services have (--generate-key makes one)", config.EnvConfigKey)
			}
			b, err := io.ReadAll(r.in)
			if err != nil {
				return usageErr("read stdin: %v", err)
			}
			plain := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			if plain == "" {
				return usageErr("nothing to encrypt: pipe the secret to stdin")
			}
			enc, err := config.EncryptSecret(plain, key)
			if err != nil {
				return usageErr("%v", err)
			}
			if r.jsonOutput() {
				r.writeJSON(map[string]any{"ok": true, "value": enc})
				return nil
			}
			r.printf("%s\n", enc)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&generate, "generate-key", false, "print a new random key for "+config.EnvConfigKey)
	return cmd
}

// Default prefixes a service uses besides its config: coord's registry,
// locks, elections and instance IDs.
const (
	DefaultRegistryPrefix = "/services/"
	DefaultLockPrefix     = "/locks/"
	DefaultElectionPrefix = "/elections/"
	DefaultIDsPrefix      = "/ids/"
)

// OperatorUser and OperatorRole are what auth init creates for the people
// (and pipelines) that write config.
const (
	OperatorUser = "config-operator"
	OperatorRole = "config-operator"
)

// grant is one permission of a role.
type grant struct {
	Prefix string `json:"prefix"`
	Perm   string `json:"perm"` // read, write or readwrite
	Why    string `json:"why"`
}

// ServiceUser is the etcd user (and role) auth init makes for a service in
// an env: "{env}.{service}" (a dot cannot occur in either name).
func ServiceUser(env, service string) string { return env + "." + service }

// prefixes holds the prefixes auth init grants on.
type prefixes struct {
	registry, locks, elections, ids string
}

// serviceGrants is everything a service needs under its role: read its own
// config and the global layer (config.Value watches exactly those keys),
// register itself and discover others, take locks, run elections and hold
// instance IDs.
func serviceGrants(env, service string, p prefixes) []grant {
	return []grant{
		{"/config/" + env + "/" + service + "/", "read", "its own config documents"},
		{"/config/" + env + "/global/", "read", "the env-wide config documents"},
		{p.registry, "read", "discovery of every service's instances"},
		{p.registry + service + "/", "readwrite", "registering its own instances"},
		{p.locks, "readwrite", "distributed locks (lock names are shared between services)"},
		{p.elections, "readwrite", "leader elections"},
		{p.ids + service + "/", "readwrite", "its instance IDs"},
	}
}

func operatorGrants(auditPrefix string) []grant {
	return []grant{
		{"/config/", "readwrite", "every config document of every env"},
		{auditPrefix, "readwrite", "the audit records written with each change"},
	}
}

func (r *runner) authCommand() *cobra.Command {
	auth := &cobra.Command{Use: "auth", Short: "Set up etcd users, roles and authentication"}
	var services []string
	var p prefixes
	var operator string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the root, operator and per-service users and roles, then enable auth",
		Long: `Create, in --env, for each service of --services (or --service):
  user and role "{env}.{service}" with read on /config/{env}/{service}/ and
  /config/{env}/global/, read on the registry prefix and readwrite on
  {registry}{service}/, readwrite on the lock and election prefixes and on
  {ids}{service}/;
the operator user and role (readwrite on /config/ and the audit prefix),
the root user (password from ` + EnvRootPassword + `, else generated) with the
root role; then enable authentication. Without services it creates root
and the operator only. Generated passwords are printed once.
Existing users keep their passwords; grants are added, never removed, so the
command can be run again for a new service, as root once auth is on.`,
		Args: cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			env, err := r.requireEnv()
			if err != nil {
				return err
			}
			if len(services) == 0 && r.g.service != "" {
				services = []string{r.g.service}
			}
			for _, s := range services {
				if !nameRe.MatchString(s) || s == config.GlobalService {
					return usageErr("--services: %q is not a service name", s)
				}
			}
			for _, pf := range []*string{&p.registry, &p.locks, &p.elections, &p.ids} {
				if !strings.HasPrefix(*pf, "/") {
					return usageErr("prefix %q must start with /", *pf)
				}
				if !strings.HasSuffix(*pf, "/") {
					*pf += "/"
				}
			}
			return r.withClient(cmd.Context(), func(cli *clientv3.Client) error {
				return r.authInit(cmd.Context(), cli, env, services, operator, p)
			})
		}),
	}
	f := cmd.Flags()
	f.StringSliceVar(&services, "services", nil, "the services to create users for, comma-separated")
	f.StringVar(&operator, "operator", OperatorUser, "the operator user's name")
	f.StringVar(&p.registry, "registry-prefix", DefaultRegistryPrefix, "the service registry's prefix")
	f.StringVar(&p.locks, "lock-prefix", DefaultLockPrefix, "the locks' prefix")
	f.StringVar(&p.elections, "election-prefix", DefaultElectionPrefix, "the elections' prefix")
	f.StringVar(&p.ids, "ids-prefix", DefaultIDsPrefix, "the instance IDs' prefix (each service gets {prefix}{service}/)")
	auth.AddCommand(cmd)
	return auth
}

// createdUser is a user auth init made, with its generated password.
type createdUser struct {
	User     string `json:"user"`
	Password string `json:"password,omitempty"`
	Role     string `json:"role"`
}

func (r *runner) authInit(ctx context.Context, cli *clientv3.Client, env string, services []string, operator string, p prefixes) error {
	var created []createdUser
	roles := map[string][]grant{}

	rootPW := os.Getenv(EnvRootPassword)
	pw, made, err := r.ensureUser(ctx, cli, "root", rootPW)
	if err != nil {
		return err
	}
	if made {
		created = append(created, createdUser{User: "root", Password: revealIf(rootPW == "", pw), Role: "root"})
	}
	if err := r.authCall(ctx, "grant role root to user root", func(c context.Context) error {
		_, err := cli.UserGrantRole(c, "root", "root")
		return err
	}); err != nil {
		return err
	}

	type account struct {
		user   string
		grants []grant
	}
	accounts := []account{{operator, operatorGrants(r.g.auditPrefix)}}
	for _, s := range services {
		accounts = append(accounts, account{ServiceUser(env, s), serviceGrants(env, s, p)})
	}
	for _, a := range accounts {
		if err := r.ensureRole(ctx, cli, a.user, a.grants); err != nil {
			return err
		}
		roles[a.user] = a.grants
		pw, made, err := r.ensureUser(ctx, cli, a.user, "")
		if err != nil {
			return err
		}
		if made {
			created = append(created, createdUser{User: a.user, Password: pw, Role: a.user})
		}
		if err := r.authCall(ctx, "grant role "+a.user+" to user "+a.user, func(c context.Context) error {
			_, err := cli.UserGrantRole(c, a.user, a.user)
			return err
		}); err != nil {
			return err
		}
	}
	if err := r.authCall(ctx, "enable authentication", func(c context.Context) error {
		_, err := cli.AuthEnable(c)
		return err
	}); err != nil {
		return err
	}

	if r.jsonOutput() {
		r.writeJSON(map[string]any{"ok": true, "authEnabled": true, "created": nonNilSlice(created), "roles": roles})
		return nil
	}
	for _, a := range accounts {
		r.printf("role %s\n", a.user)
		for _, g := range a.grants {
			r.printf("    %-9s %-32s %s\n", g.Perm, g.Prefix+"*", g.Why)
		}
	}
	for _, c := range created {
		if c.Password == "" {
			r.printf("created user %s (password from %s)\n", c.User, EnvRootPassword)
			continue
		}
		r.printf("created user %-24s password %s\n", c.User, c.Password)
	}
	if len(created) > 0 {
		r.notef("note: store the passwords above now; they are not shown again")
	}
	r.printf("authentication is enabled\n")
	return nil
}

func revealIf(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}

// authCall runs one auth RPC bounded by --timeout.
func (r *runner) authCall(ctx context.Context, what string, fn func(context.Context) error) error {
	c, cancel := r.reqCtx(ctx)
	defer cancel()
	return r.etcdErr(what, fn(c))
}

// ensureUser adds user with password (generated when empty) unless it
// exists; made reports whether it was added.
func (r *runner) ensureUser(ctx context.Context, cli *clientv3.Client, user, password string) (string, bool, error) {
	c, cancel := r.reqCtx(ctx)
	_, err := cli.UserGet(c, user)
	cancel()
	switch {
	case err == nil:
		return "", false, nil
	case !errors.Is(rpctypes.Error(err), rpctypes.ErrUserNotFound):
		return "", false, r.etcdErr("look up user "+user, err)
	}
	if password == "" {
		b := make([]byte, 18)
		if _, err := rand.Read(b); err != nil {
			return "", false, err
		}
		password = base64.RawURLEncoding.EncodeToString(b)
	}
	err = r.authCall(ctx, "add user "+user, func(c context.Context) error {
		_, err := cli.UserAdd(c, user, password)
		return err
	})
	return password, err == nil, err
}

// ensureRole adds role unless it exists and grants it every permission in
// grants (granting again is harmless).
func (r *runner) ensureRole(ctx context.Context, cli *clientv3.Client, role string, grants []grant) error {
	c, cancel := r.reqCtx(ctx)
	_, err := cli.RoleGet(c, role)
	cancel()
	if errors.Is(rpctypes.Error(err), rpctypes.ErrRoleNotFound) {
		err = r.authCall(ctx, "add role "+role, func(c context.Context) error {
			_, err := cli.RoleAdd(c, role)
			return err
		})
	}
	if err != nil {
		return r.etcdErr("look up role "+role, err)
	}
	perms := map[string]clientv3.PermissionType{
		"read":      clientv3.PermissionType(clientv3.PermRead),
		"write":     clientv3.PermissionType(clientv3.PermWrite),
		"readwrite": clientv3.PermissionType(clientv3.PermReadWrite),
	}
	for _, g := range grants {
		if err := r.authCall(ctx, "grant "+g.Perm+" on "+g.Prefix+" to role "+role, func(c context.Context) error {
			_, err := cli.RoleGrantPermission(c, role, g.Prefix, clientv3.GetPrefixRangeEnd(g.Prefix), perms[g.Perm])
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}
