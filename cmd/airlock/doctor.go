package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
	"github.com/airlock-mcp/airlock/tools/ssh"
)

func newDoctorCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that airlock can do its job: each resource with the broker's own credential, the identity provider, the store and the webhooks",
		Long: `Check a deployment before agents find out: the config is checked first (as
airlock config check does), then each part is tried for real, with the
credentials the config names.

  postgres    the admin logs in and has CREATEROLE; each grant's roles exist and
              the admin may hand them out; it may end a lease's sessions
              (pg_signal_backend); for each grant a role is minted, logs in the
              way agents' roles do (over TCP, with a password) and is dropped
              (with every masking profile that has enforce: privileges, too)
  ssh         the host answers and presents the configured host key; for each
              grant a certificate from airlock's CA is accepted for its
              principal and a command runs under the configured bash
  kubernetes  the API server answers airlock's credential, which may create
              tokens for each grant's ServiceAccount or impersonate its user
              and groups (SelfSubjectAccessReview); a token is minted
  identity    the provider's discovery document names the configured issuer,
              and its signing keys are published
  store       it opens (bringing its schema up to date, as serve would) and
              takes a write
  webhooks    each answers HTTP

Prints one line per check and, for each failure, how to fix it. Exits 1 when
any check fails. Roles minted here are named airlock_doctor… and dropped at
once; no data is read or written.`,
		Example: `  airlock doctor --config /etc/airlock/airlock.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if errs := checkConfig(cfgPath, false); len(errs) > 0 {
				for _, e := range errs {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				return &exitError{code: 1, msg: fmt.Sprintf("%s: %d %s in the config; fix them first (airlock config check %s)", cfgPath, len(errs), plural(len(errs), "error", "errors"), cfgPath)}
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			d := &doctor{cfg: cfg, env: config.OSEnvironment{Dir: cfg.Dir}, timeout: 15 * time.Second}
			d.run(cmd.Context())
			failed := d.report(cmd.OutOrStdout())
			if failed > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d of %d checks failed", failed, len(d.results))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "airlock.yaml", "config file")
	return cmd
}

// checkResult is one line of the doctor's table.
type checkResult struct {
	subject string // "store", "shop (postgres)", "identity provider"
	check   string
	ok      bool
	detail  string
	fix     string
}

type doctor struct {
	cfg     *config.Config
	env     config.OSEnvironment
	timeout time.Duration
	results []checkResult
}

func (d *doctor) pass(subject, check, detail string) {
	d.results = append(d.results, checkResult{subject: subject, check: check, ok: true, detail: detail})
}

func (d *doctor) fail(subject, check, detail, fix string) {
	d.results = append(d.results, checkResult{subject: subject, check: check, detail: detail, fix: fix})
}

func (d *doctor) run(ctx context.Context) {
	d.checkStore(ctx)
	if d.cfg.Auth.Mode == config.AuthOIDC {
		d.checkIdentityProvider(ctx)
	}
	for i, w := range d.cfg.Approvals.Webhooks {
		d.checkWebhook(ctx, i, w.URL)
	}
	for _, spec := range d.cfg.Resources {
		subject := fmt.Sprintf("%s (%s)", spec.Name, spec.Kind)
		res, err := kinds()[spec.Kind].Open(spec, d.env)
		if err != nil {
			i := slices.IndexFunc(d.cfg.Resources, func(r tools.ResourceSpec) bool { return r.Name == spec.Name })
			e := d.cfg.ResourceError(i, err)
			d.fail(subject, "configuration", strings.TrimPrefix(e.Key, fmt.Sprintf("resources[%d].", i))+": "+e.Msg,
				fmt.Sprintf("give airlock's process what the setting at %s:%d names (an environment variable or a file); until then airlock serves the resource as unavailable", d.cfg.Source, e.Line))
			continue
		}
		switch spec.Kind {
		case "postgres":
			d.checkPostgres(ctx, subject, spec, res)
		case "ssh":
			d.checkSSH(ctx, subject, spec, res)
		case "kubernetes":
			d.checkKubernetes(ctx, subject, spec, res)
		}
		res.Close()
	}
}

// report prints the table, then how to fix each failure, and returns the
// number of failures.
func (d *doctor) report(w io.Writer) int {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tSUBJECT\tCHECK\tDETAIL")
	var fixes []string
	for _, r := range d.results {
		status := "pass"
		detail := r.detail
		if !r.ok {
			status = "FAIL"
			fixes = append(fixes, fmt.Sprintf("[%d] %s, %s: %s", len(fixes)+1, r.subject, r.check, r.fix))
			detail = fmt.Sprintf("%s [%d]", detail, len(fixes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", status, r.subject, r.check, detail)
	}
	tw.Flush()
	if len(fixes) > 0 {
		fmt.Fprintln(w, "\nTo fix:")
		for _, f := range fixes {
			fmt.Fprintln(w, f)
		}
	} else {
		fmt.Fprintf(w, "\nAll %d checks passed.\n", len(d.results))
	}
	return len(fixes)
}

func (d *doctor) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, d.timeout)
}

// checkStore opens the store as serve would and takes a write lock.
func (d *doctor) checkStore(parent context.Context) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	const subject = "store"
	pg := d.postgresStore()
	st, err := store.Open(ctx, d.cfg.StoreURL())
	if err != nil {
		hint := fmt.Sprintf("store: in %s must name a file airlock can create and write (the directory must exist and be writable by airlock's user)", d.cfg.Source)
		if pg {
			hint = fmt.Sprintf("store: in %s must name a PostgreSQL database airlock can reach and log in to (postgres://user@host:5432/dbname, the password by ?password_env= or ?password_file=), as a role that may create tables in it; airlock config check --resolve-secrets checks the password reference", d.cfg.Source)
		}
		d.fail(subject, "opens", err.Error(), hint)
		return
	}
	defer st.Close()
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		hint := "the file is not an airlock store: point store: at another file"
		if pg {
			hint = "the database is not an airlock store, or its schema is newer than this airlock: point store: at another database, or upgrade airlock"
		}
		d.fail(subject, "opens", err.Error(), hint)
		return
	}
	d.pass(subject, "opens", fmt.Sprintf("%s, schema version %d (current)", store.RedactURL(d.cfg.Store), v))
	tx, err := st.DB().BeginTx(ctx, nil)
	if err == nil {
		// A write that is rolled back: it needs the write lock and a
		// writable file, and leaves nothing.
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`)
		_ = tx.Rollback()
	}
	if err != nil {
		hint := "make the store's file and its directory writable by airlock's user; another process must not hold it locked"
		if pg {
			hint = "the store's role must be able to write airlock's tables, on a primary (not a read-only standby)"
		}
		d.fail(subject, "writable", err.Error(), hint)
		return
	}
	d.pass(subject, "writable", "a write transaction succeeds")
}

// postgresStore reports whether the store is a PostgreSQL database rather
// than a SQLite file.
func (d *doctor) postgresStore() bool {
	scheme, _, _ := strings.Cut(d.cfg.Store, "://")
	return strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql")
}

func (d *doctor) checkIdentityProvider(parent context.Context) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	const subject = "identity provider"
	issuer := d.cfg.Auth.OIDC.Issuer
	discovery := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, discovery, &doc); err != nil {
		d.fail(subject, "discovery", err.Error(), fmt.Sprintf("auth.oidc.issuer must be the provider's issuer URL, reachable from airlock: %s must answer", discovery))
		return
	}
	if doc.Issuer != issuer {
		d.fail(subject, "discovery", fmt.Sprintf("the provider says its issuer is %q, the config says %q", doc.Issuer, issuer),
			fmt.Sprintf("set auth.oidc.issuer to %q exactly (a trailing slash matters): tokens carry it in iss", doc.Issuer))
		return
	}
	d.pass(subject, "discovery", "issuer "+issuer)
	var keys struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	if err := getJSON(ctx, doc.JWKSURI, &keys); err != nil {
		d.fail(subject, "signing keys", err.Error(), "the provider's jwks_uri must answer airlock: check the network path and the provider")
		return
	}
	var usable int
	for _, k := range keys.Keys {
		if (k.Use == "" || k.Use == "sig") && (k.Alg == "" || slices.Contains(d.cfg.Auth.OIDC.Algorithms, k.Alg)) {
			usable++
		}
	}
	if usable == 0 {
		d.fail(subject, "signing keys", fmt.Sprintf("%d keys published, none for signing with %s", len(keys.Keys), strings.Join(d.cfg.Auth.OIDC.Algorithms, ", ")),
			"configure the provider to sign access tokens with an asymmetric key (RS256, ES256, EdDSA), or list its algorithm in auth.oidc.algorithms")
		return
	}
	d.pass(subject, "signing keys", fmt.Sprintf("%d signing %s published", usable, plural(usable, "key", "keys")))
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: not JSON: %v", url, err)
	}
	return nil
}

// checkWebhook asks each webhook for an answer without delivering
// anything: a HEAD request, to which any HTTP status below 500 is an answer.
func (d *doctor) checkWebhook(parent context.Context, i int, url string) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	w := d.cfg.Approvals.Webhooks[i]
	subject := fmt.Sprintf("webhook %d", i+1)
	if w.SecretEnv != "" || w.SecretFile != "" {
		key := fmt.Sprintf("approvals.webhooks[%d]", i)
		if _, err := config.Secret(d.env, key+".secret", w.SecretEnv, w.SecretFile); err != nil {
			d.fail(subject, "signing secret", strings.TrimPrefix(err.Error(), key+"."), "set it for airlock's process: deliveries are signed with it, and receivers verify them")
		} else {
			d.pass(subject, "signing secret", "set")
		}
	}
	check := "answers at " + strings.TrimSuffix(strings.TrimPrefix(w.String(), "webhook("), ")")
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			} else {
				d.pass(subject, check, fmt.Sprintf("HTTP %d to HEAD", resp.StatusCode))
				return
			}
		}
	}
	// The URL itself may be a credential (Slack's are): name its host only.
	msg := strings.ReplaceAll(err.Error(), url, w.String())
	d.fail(subject, check, msg, fmt.Sprintf("approvals.webhooks[%d].url must be reachable from airlock; approvals are retried with backoff, but nobody hears of them until it answers", i))
}

// --- PostgreSQL ---

func (d *doctor) checkPostgres(parent context.Context, subject string, spec tools.ResourceSpec, res tools.Resource) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	dsn, err := config.Secret(d.env, "admin_dsn", spec.AdminDSNEnv, spec.AdminDSNFile)
	if err != nil {
		d.fail(subject, "admin logs in", err.Error(), "set it to the admin connection string")
		return
	}
	pcfg, err := pgx.ParseConfig(strings.TrimSpace(string(dsn)))
	if err != nil {
		d.fail(subject, "admin logs in", "the admin connection string does not parse", "use key=value (host=... user=... dbname=...) or a postgres:// URL")
		return
	}
	where := fmt.Sprintf("%s@%s:%d/%s", pcfg.User, pcfg.Host, pcfg.Port, pcfg.Database)
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		d.fail(subject, "admin logs in", fmt.Sprintf("as %s: %v", where, err), "check the admin connection string (host, port, user, password, dbname) and that the server accepts it (pg_hba.conf)")
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var (
		admin             string
		super, createRole bool
		versionNum        int
		signalBackend     bool
		version           string
	)
	err = conn.QueryRow(ctx, `SELECT current_user, r.rolsuper, r.rolcreaterole, current_setting('server_version_num')::int,
		current_setting('server_version'), pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&admin, &super, &createRole, &versionNum, &version, &signalBackend)
	if err != nil {
		d.fail(subject, "admin logs in", err.Error(), "the admin role must be able to read pg_roles")
		return
	}
	d.pass(subject, "admin logs in", fmt.Sprintf("as %s (PostgreSQL %s)", where, strings.Fields(version)[0]))
	adminIdent := pgx.Identifier{admin}.Sanitize()
	switch {
	case super:
		d.pass(subject, "admin may create roles", admin+" is a superuser: it works, but a role with CREATEROLE and the grant roles is all airlock needs")
	case createRole:
		d.pass(subject, "admin may create roles", admin+" has CREATEROLE")
	default:
		d.fail(subject, "admin may create roles", admin+" has neither CREATEROLE nor SUPERUSER", fmt.Sprintf("ALTER ROLE %s CREATEROLE;", adminIdent))
	}
	if super || signalBackend {
		d.pass(subject, "admin may end a lease's sessions", "revocation can terminate a minted role's connections")
	} else {
		d.fail(subject, "admin may end a lease's sessions", admin+" is not a member of pg_signal_backend: revoking a lease whose role is still connected fails",
			fmt.Sprintf("GRANT pg_signal_backend TO %s;", adminIdent))
	}

	grantsOK := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(spec.Grants)) {
		g := spec.Grants[name]
		check := "grant " + name + ": roles"
		rows, err := conn.Query(ctx, `SELECT r.rolname, r.rolsuper, pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION')
			FROM pg_roles r WHERE r.rolname = ANY($1)`, g.Roles)
		type role struct {
			name         string
			super, admin bool
		}
		var found []role
		if err == nil {
			for rows.Next() {
				var r role
				if err = rows.Scan(&r.name, &r.super, &r.admin); err != nil {
					break
				}
				found = append(found, r)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if err != nil {
			d.fail(subject, check, err.Error(), "the admin role must be able to read pg_roles")
			continue
		}
		var missing, cannot, fixes []string
		for _, want := range g.Roles {
			i := slices.IndexFunc(found, func(r role) bool { return r.name == want })
			ident := pgx.Identifier{want}.Sanitize()
			switch {
			case i < 0:
				missing = append(missing, want)
				fixes = append(fixes, fmt.Sprintf("CREATE ROLE %s NOLOGIN; (then grant it what grant %s should allow)", ident, name))
			case super:
			case found[i].super:
				cannot = append(cannot, want)
				fixes = append(fixes, fmt.Sprintf("%s is a superuser role: a grant must not hand out superuser; use a role with only the privileges the grant needs", ident))
			case found[i].admin:
			case versionNum < 160000 && createRole:
				// Before PostgreSQL 16, CREATEROLE may grant any role that
				// is not a superuser's.
			default:
				cannot = append(cannot, want)
				fixes = append(fixes, fmt.Sprintf("GRANT %s TO %s WITH ADMIN OPTION;", ident, adminIdent))
			}
		}
		switch {
		case len(missing) > 0:
			d.fail(subject, check, plural(len(missing), "role ", "roles ")+strings.Join(missing, ", ")+" "+plural(len(missing), "does", "do")+" not exist", strings.Join(fixes, " "))
		case len(cannot) > 0:
			d.fail(subject, check, admin+" may not grant "+strings.Join(cannot, ", "), strings.Join(fixes, " "))
		default:
			grantsOK[name] = true
			d.pass(subject, check, strings.Join(g.Roles, ", ")+plural(len(g.Roles), " exists; ", " exist; ")+admin+plural(len(g.Roles), " may grant it", " may grant them"))
		}
	}
	if !super && !createRole {
		return // a mint would fail for the reason already given
	}

	// A real lease per grant: minted, used the way agents' roles are (over
	// TCP with a password, to connect_host), dropped.
	// Minted roles log in where query_db connects them: connect_host, or
	// the admin's host (a unix socket there becomes 127.0.0.1).
	host := pcfg.Host
	switch {
	case spec.ConnectHost != "":
		host = spec.ConnectHost
	case strings.HasPrefix(host, "/"):
		host = "127.0.0.1"
	}
	loginAt := fmt.Sprintf("%s:%d", host, pcfg.Port)
	guards := d.enforcedProfiles()
	for _, name := range slices.Sorted(maps.Keys(spec.Grants)) {
		if !grantsOK[name] {
			continue
		}
		d.mintPostgres(ctx, conn, subject, "grant "+name+": a minted role logs in and is dropped", loginAt, spec, res, name, nil)
		for _, p := range guards {
			d.mintPostgres(ctx, conn, subject, fmt.Sprintf("grant %s with profile %s (enforce: privileges)", name, p.Name()), loginAt, spec, res, name, p)
		}
	}
}

// enforcedProfiles returns the masking profiles with enforce: privileges.
func (d *doctor) enforcedProfiles() []*masking.Profile {
	engine, err := masking.New(d.cfg.Masking, make([]byte, 32))
	if err != nil {
		return nil // config check reports it
	}
	var out []*masking.Profile
	for _, name := range engine.ProfileNames() {
		if p, ok := engine.Profile(name); ok && p.EnforcesPrivileges() {
			out = append(out, p)
		}
	}
	return out
}

func (d *doctor) mintPostgres(ctx context.Context, conn *pgx.Conn, subject, check, loginAt string, spec tools.ResourceSpec, res tools.Resource, grant string, guard *masking.Profile) {
	leaseID := "doctor" + randomHex(8)
	req := tools.MintRequest{
		LeaseID: leaseID, GrantName: grant, Grant: spec.Grants[grant],
		Identity: policy.Identity{Subject: "airlock-doctor", Method: "doctor"},
		CallID:   leaseID, Expires: time.Now().Add(2 * time.Minute),
	}
	if h, ok := res.(tools.HandleNamer); ok {
		req.Handle = h.Handle(leaseID)
	}
	if guard != nil {
		req.Guard = guard
	}
	cred, err := res.Mint(ctx, req)
	if err != nil {
		fix := "the admin role could not create the lease's role: see the error; airlock config check and the checks above say what the admin needs"
		if guard != nil {
			fix = "an enforced lease copies the grant's privileges column by column: the admin must own the tables or hold their privileges WITH GRANT OPTION (see docs/masking.md)"
		}
		d.fail(subject, check, err.Error(), fix)
		_ = res.Revoke(context.WithoutCancel(ctx), tools.LeaseRef{LeaseID: leaseID, Handle: req.Handle})
		return
	}
	role := cred.Handle()
	_, runErr := runTool(ctx, "query_db", res, cred, map[string]any{"resource": spec.Name, "sql": "SELECT 1"})
	if c, ok := cred.(io.Closer); ok {
		_ = c.Close()
	}
	revokeErr := res.Revoke(context.WithoutCancel(ctx), tools.LeaseRef{LeaseID: leaseID, Handle: role})
	var left bool
	if revokeErr == nil {
		revokeErr = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&left)
	}
	switch {
	case runErr != nil:
		d.fail(subject, check, "minted, but it could not log in: "+runErr.Error(),
			"minted roles log in over TCP with a password (SCRAM), at the admin DSN's host or connect_host (a unix socket becomes 127.0.0.1): the server must listen there and pg_hba.conf must allow it (host ... scram-sha-256)")
	case revokeErr != nil:
		d.fail(subject, check, "it logged in, but dropping it failed: "+revokeErr.Error(), "the admin role must be able to DROP the roles it creates; start-up retries airlock_ roles left behind")
	case left:
		d.fail(subject, check, "it logged in, but is still there after revocation", "the admin role must be able to DROP the roles it creates")
	default:
		how := "over TCP at " + loginAt
		if guard != nil {
			d.pass(subject, check, "column privileges granted, logged in "+how+", dropped")
			return
		}
		d.pass(subject, check, "logged in "+how+", dropped")
	}
}

// --- SSH ---

func (d *doctor) checkSSH(parent context.Context, subject string, spec tools.ResourceSpec, res tools.Resource) {
	hostKey := "host key matches " + hostKeySetting(spec)
	reached, keyChecked := false, false
	for _, name := range slices.Sorted(maps.Keys(spec.Grants)) {
		g := spec.Grants[name]
		check := fmt.Sprintf("grant %s: certificate accepted for %s", name, g.Principals[0])
		ctx, cancel := d.ctx(parent)
		leaseID := "doctor" + randomHex(8)
		cred, err := res.Mint(ctx, tools.MintRequest{LeaseID: leaseID, GrantName: name, Grant: g,
			Identity: policy.Identity{Subject: "airlock-doctor", Method: "doctor"}, CallID: "airlock-doctor-" + leaseID, Expires: time.Now().Add(2 * time.Minute)})
		if err != nil {
			cancel()
			d.fail(subject, check, err.Error(), "the user CA key must be a usable private key (ssh-keygen -t ed25519)")
			continue
		}
		out, err := runTool(ctx, "run_ssh", res, cred, map[string]any{"resource": spec.Name, "command": "true"})
		cancel()
		switch {
		case errors.Is(err, ssh.ErrHostKeyMismatch):
			if !reached {
				d.pass(subject, "reachable", "sshd answers at "+spec.Address)
				reached = true
			}
			msg, _, _ := strings.Cut(stripResource(err.Error(), spec.Name), ": refusing to connect")
			host, port, _ := net.SplitHostPort(spec.Address)
			d.fail(subject, hostKey, msg,
				fmt.Sprintf("if the host's key changed on purpose, put the new one in %s (ssh-keyscan -t ed25519 -p %s %s shows it; compare its fingerprint with ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host); if not, do not connect: something else answers at %s", hostKeySetting(spec), port, host, spec.Address))
			return // every grant would fail the same way
		case errors.Is(err, tools.ErrBackendUnavailable) && !reached:
			d.fail(subject, "reachable", stripResource(err.Error(), spec.Name), fmt.Sprintf("address: %s must be where sshd listens, reachable from airlock", spec.Address))
			return
		}
		if !reached {
			d.pass(subject, "reachable", "sshd answers at "+spec.Address)
			reached = true
		}
		if !keyChecked {
			d.pass(subject, hostKey, "the host proved the configured identity")
			keyChecked = true
		}
		switch {
		case errors.Is(err, ssh.ErrAuthFailed):
			d.fail(subject, check, "the host refused the certificate",
				fmt.Sprintf("on the host, TrustedUserCAKeys must list airlock's user CA public key (ssh-keygen -y -f the CA key), and the account %s must exist, be unlocked (usermod -p '*' %s) and be allowed (AllowUsers, AuthorizedPrincipalsFile); the host's sshd log says which", g.Principals[0], g.Principals[0]))
		case err != nil:
			d.fail(subject, check, stripResource(err.Error(), spec.Name), "see the error")
		case out.Streams != nil && out.Streams.ExitCode != 0:
			d.fail(subject, check, fmt.Sprintf("logged in, but `true` exited %d: %s", out.Streams.ExitCode, strings.TrimSpace(out.Streams.Stderr)),
				"shell: must be the path of bash on the host (default /bin/bash): every command runs under it")
		default:
			d.pass(subject, check, "logged in, a command ran under "+shellOf(spec))
		}
	}
}

func hostKeySetting(spec tools.ResourceSpec) string {
	switch {
	case spec.HostKey != "":
		return "host_key"
	case spec.HostCA != "":
		return "host_ca"
	}
	return "known_hosts_file"
}

func shellOf(spec tools.ResourceSpec) string {
	if spec.Shell != "" {
		return spec.Shell
	}
	return ssh.DefaultShell
}

// stripResource drops the "resource NAME: " the backends put first: the
// table already names the resource.
func stripResource(msg, name string) string {
	return strings.TrimPrefix(msg, "resource "+name+": ")
}

// --- Kubernetes ---

func (d *doctor) checkKubernetes(parent context.Context, subject string, spec tools.ResourceSpec, res tools.Resource) {
	ctx, cancel := d.ctx(parent)
	defer cancel()
	var (
		rc  *rest.Config
		err error
	)
	if spec.InCluster {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", spec.KubeconfigFile)
	}
	if err != nil {
		d.fail(subject, "API server answers", err.Error(), "kubeconfig_file must be a kubeconfig whose current context is airlock's own credential")
		return
	}
	client, err := rest.HTTPClientFor(rc)
	if err != nil {
		d.fail(subject, "API server answers", err.Error(), "kubeconfig_file must be a kubeconfig whose current context is airlock's own credential")
		return
	}
	review := func(attrs map[string]string) (bool, string, error) {
		body, _ := json.Marshal(map[string]any{
			"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
			"spec": map[string]any{"resourceAttributes": attrs},
		})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(rc.Host, "/")+"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", bytes.NewReader(body))
		if err != nil {
			return false, "", err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return false, "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return false, "", fmt.Errorf("HTTP %d from the API server", resp.StatusCode)
		}
		var out struct {
			Status struct {
				Allowed bool   `json:"allowed"`
				Reason  string `json:"reason"`
			} `json:"status"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
			return false, "", err
		}
		return out.Status.Allowed, out.Status.Reason, nil
	}
	if _, _, err := review(map[string]string{"verb": "get", "resource": "namespaces"}); err != nil {
		d.fail(subject, "API server answers", err.Error(), "the API server in kubeconfig_file must be reachable from airlock and accept its credential")
		return
	}
	d.pass(subject, "API server answers", rc.Host)
	for _, name := range slices.Sorted(maps.Keys(spec.Grants)) {
		g := spec.Grants[name]
		if g.ServiceAccount != "" {
			ns, sa, _ := strings.Cut(g.ServiceAccount, "/")
			check := "grant " + name + ": may create tokens for " + g.ServiceAccount
			ok, _, err := review(map[string]string{"verb": "create", "resource": "serviceaccounts", "subresource": "token", "namespace": ns, "name": sa})
			switch {
			case err != nil:
				d.fail(subject, check, err.Error(), "see the error")
				continue
			case !ok:
				d.fail(subject, check, "airlock's credential may not create serviceaccounts/token for "+g.ServiceAccount,
					fmt.Sprintf("bind airlock's identity to a Role in namespace %s allowing create on serviceaccounts/token for %s (examples/kubernetes/rbac-service-account.yaml)", ns, sa))
				continue
			}
			leaseID := "doctor" + randomHex(8)
			cred, err := res.Mint(ctx, tools.MintRequest{LeaseID: leaseID, GrantName: name, Grant: g,
				Identity: policy.Identity{Subject: "airlock-doctor", Method: "doctor"}, CallID: leaseID, Expires: time.Now().Add(g.TTL)})
			if err != nil {
				d.fail(subject, check, "allowed, but the TokenRequest failed: "+err.Error(), "the ServiceAccount must exist: kubectl -n "+ns+" create serviceaccount "+sa)
				continue
			}
			_ = res.Revoke(ctx, tools.LeaseRef{LeaseID: leaseID, Handle: cred.Handle()})
			d.pass(subject, check, "a token was issued")
			continue
		}
		im := g.Impersonate
		check := "grant " + name + ": may impersonate " + im.User
		attrs := map[string]string{"verb": "impersonate", "resource": "users"}
		if !strings.Contains(im.User, "{{") {
			attrs["name"] = im.User
		}
		ok, _, err := review(attrs)
		var denied []string
		if err == nil && !ok {
			denied = append(denied, "users")
		}
		for _, grp := range im.Groups {
			if err != nil {
				break
			}
			ga := map[string]string{"verb": "impersonate", "resource": "groups"}
			if !strings.Contains(grp, "{{") {
				ga["name"] = grp
			}
			var gok bool
			if gok, _, err = review(ga); err == nil && !gok {
				denied = append(denied, "groups "+grp)
			}
		}
		switch {
		case err != nil:
			d.fail(subject, check, err.Error(), "see the error")
		case len(denied) > 0:
			d.fail(subject, check, "airlock's credential may not impersonate "+strings.Join(denied, ", "),
				"bind airlock's identity to a ClusterRole allowing impersonate on users and groups (examples/kubernetes/rbac-impersonation.yaml)")
		default:
			d.pass(subject, check, "impersonation of the user and groups is allowed")
		}
	}
}

// --- helpers ---

// runTool runs one call of a tool against a resource with a credential,
// without the broker: the way a lease's credential is used.
func runTool(ctx context.Context, name string, res tools.Resource, cred tools.Credential, args map[string]any) (*tools.Output, error) {
	var tool tools.Tool
	for _, t := range allTools() {
		if t.Name() == name {
			tool = t
		}
	}
	raw, _ := json.Marshal(args)
	a, err := tool.Decode(raw)
	if err != nil {
		return nil, err
	}
	return tool.Execute(ctx, tools.Target{
		Resource: res, Credential: cred,
		Limits:   tools.Limits{MaxRows: 1, MaxBytes: 4096, Timeout: 10 * time.Second},
		Identity: policy.Identity{Subject: "airlock-doctor", Method: "doctor"},
		CallID:   "airlock-doctor", Logger: slog.New(slog.DiscardHandler),
	}, a)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
