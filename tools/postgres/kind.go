package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/airlock-mcp/airlock/tools"
)

// KindName is the value of `kind:` for PostgreSQL resources.
const KindName = "postgres"

// RolePrefix starts the name of every role Airlock mints; Orphans and Revoke
// only ever touch roles with this prefix.
const RolePrefix = "airlock_"

const (
	// roleConnectionLimit is the CONNECTION LIMIT of a minted role: the
	// credential's pool plus room for connections being torn down after a
	// cut-off result.
	roleConnectionLimit = 8
	credentialMaxConns  = 4
	adminMaxConns       = 4
	metadataTTL         = time.Minute
)

// Sentinel errors of this package. Each wraps a tools sentinel where the
// broker needs to tell the agent what happened.
var (
	// ErrConfig means a resource's configuration is not usable.
	ErrConfig = errors.New("invalid postgres resource configuration")
	// ErrLoginRefused means PostgreSQL refused the lease's role at login:
	// its VALID UNTIL has passed or it was revoked.
	ErrLoginRefused = errors.New("postgres refused the lease's role at login (expired or revoked)")
	// ErrNotOurRole means a handle does not name a role Airlock mints.
	ErrNotOurRole = errors.New("not a role minted by airlock")
	// ErrWrongTarget means Execute got a resource, credential or arguments
	// of another kind.
	ErrWrongTarget = errors.New("target is not a postgres resource and credential")
	// ErrCredentialClosed means the credential was closed (its lease revoked).
	ErrCredentialClosed = errors.New("credential is closed")
)

// Kind builds PostgreSQL resources.
type Kind struct{}

var _ tools.Kind = Kind{}

// NewKind returns the postgres resource kind.
func NewKind() tools.Kind { return Kind{} }

// Name is "postgres".
func (Kind) Name() string { return KindName }

// Open validates a postgres resource and resolves its admin DSN. It does not
// contact the server. Rules:
//   - exactly one of admin_dsn_env and admin_dsn_file;
//   - no settings of other kinds;
//   - at least one grant; every grant names roles, has a positive ttl (no
//     default: a lease's lifetime is a decision the config must state), and
//     access "", "read_only" or "read_write" ("" means read_only);
//   - grants must not carry settings of other kinds (principals, ...).
//
// Errors never include the DSN: it holds the broker's own password.
func (Kind) Open(spec tools.ResourceSpec, env tools.Environment) (tools.Resource, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: resource %s: %s", ErrConfig, spec.Name, fmt.Sprintf(format, args...))
	}
	if spec.Kind != "" && spec.Kind != KindName {
		return nil, fail("kind is %q, not %q", spec.Kind, KindName)
	}
	for _, fs := range spec.ForeignSettings(KindName) {
		return nil, fail("%s is %s, not valid for kind postgres", fs.Key, fs.OwnerPhrase())
	}
	if len(spec.Grants) == 0 {
		return nil, fail("no grants: add at least one, e.g. grants: {readonly: {roles: [app_readonly], ttl: 10m}}")
	}
	for _, name := range slices.Sorted(maps.Keys(spec.Grants)) {
		if err := checkGrant(spec.Grants[name]); err != nil {
			return nil, fail("grant %s: %v", name, err)
		}
	}

	dsn, source, err := adminDSN(spec, env)
	if err != nil {
		return nil, fail("%v", err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can echo the DSN: say where it came from instead.
		return nil, fail("the admin DSN from %s does not parse as a PostgreSQL connection string (key=value or postgres:// URL)", source)
	}
	cfg.MaxConns = adminMaxConns
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = 5 * time.Minute
	// Admin work is rare (mint, revoke, column metadata) and must not fail
	// on a connection the server dropped while it sat idle (a restart):
	// check every connection before use.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "airlock"
	}

	return &Resource{
		spec:     spec,
		adminCfg: cfg,
		credCfg:  credentialConfig(cfg, spec.ConnectHost),
		meta:     newMetadataCache(metadataTTL),
	}, nil
}

func checkGrant(g tools.Grant) error {
	switch {
	case len(g.Roles) == 0:
		return errors.New("roles is empty: name the PostgreSQL roles the minted role joins")
	case g.TTL <= 0:
		return errors.New("ttl must be positive, e.g. ttl: 10m")
	case g.Access != "" && g.Access != tools.AccessReadOnly && g.Access != tools.AccessReadWrite:
		return fmt.Errorf("access %q is not read_only or read_write", g.Access)
	case len(g.Principals) > 0 || g.PermitPTY:
		return errors.New("principals and permit_pty are ssh settings, not valid for kind postgres")
	case g.ServiceAccount != "" || g.Impersonate != nil:
		return errors.New("service_account and impersonate are kubernetes settings, not valid for kind postgres")
	}
	for _, r := range g.Roles {
		if r == "" {
			return errors.New("roles has an empty name")
		}
	}
	return nil
}

// adminDSN resolves the admin DSN and says where it came from (for errors).
func adminDSN(spec tools.ResourceSpec, env tools.Environment) (dsn, source string, err error) {
	switch {
	case spec.AdminDSNEnv != "" && spec.AdminDSNFile != "":
		return "", "", errors.New("both admin_dsn_env and admin_dsn_file are set: keep one")
	case spec.AdminDSNEnv != "":
		source = "environment variable " + spec.AdminDSNEnv
		v, ok := env.Getenv(spec.AdminDSNEnv)
		if !ok || strings.TrimSpace(v) == "" {
			return "", "", fmt.Errorf("admin_dsn_env: environment variable %s is not set: set it to the admin connection string (a role with CREATEROLE)", spec.AdminDSNEnv)
		}
		return strings.TrimSpace(v), source, nil
	case spec.AdminDSNFile != "":
		source = "file " + spec.AdminDSNFile
		b, err := env.ReadFile(spec.AdminDSNFile)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", "", fmt.Errorf("admin_dsn_file: reading %s: %v", spec.AdminDSNFile, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", "", fmt.Errorf("admin_dsn_file: %s is empty: put the admin connection string (a role with CREATEROLE) in it", spec.AdminDSNFile)
		}
		return v, source, nil
	}
	return "", "", errors.New("no admin DSN: set admin_dsn_env (an environment variable holding the admin connection string) or admin_dsn_file")
}

// credentialConfig derives the pool config minted roles connect with: the
// admin DSN's port, database and TLS settings, over TCP to connectHost (or
// the admin host; a unix socket directory there becomes 127.0.0.1). User and
// password are set per credential.
func credentialConfig(admin *pgxpool.Config, connectHost string) *pgxpool.Config {
	cfg := admin.Copy()
	cc := cfg.ConnConfig
	unixSocket := strings.HasPrefix(cc.Host, "/")
	switch {
	case connectHost != "":
		cc.Host = connectHost
		if cc.TLSConfig != nil {
			cc.TLSConfig = cc.TLSConfig.Clone()
			cc.TLSConfig.ServerName = connectHost
		}
		cc.Fallbacks = nil
	case unixSocket:
		cc.Host = "127.0.0.1"
		cc.TLSConfig = nil
		cc.Fallbacks = nil
	}
	for _, fb := range cc.Fallbacks {
		fb.Host = cc.Host
	}
	cc.User = ""
	cc.Password = ""
	cc.ConnectTimeout = 10 * time.Second
	// A call's connection is pinged only after it sat idle for a second
	// (pgxpool's default), not before every call as the admin's are: on a
	// warm lease the ping would be a round trip of its own on every call.
	cfg.ShouldPing = nil
	// Agent SQL goes over the extended protocol only, whatever the admin
	// DSN's default_query_exec_mode says: never the simple protocol with
	// client-side interpolation of parameters.
	cc.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	// NOTICE, WARNING and NOTIFY messages are dropped by the driver when no
	// handler is set: a RAISE NOTICE can carry any value the call could
	// compute, and none of it must bypass masking. Set here, whatever the
	// admin config had.
	cc.OnNotice = nil
	cc.OnNotification = nil
	cfg.MaxConns = credentialMaxConns
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = time.Minute
	cfg.BeforeConnect = nil
	cfg.AfterConnect = nil
	return cfg
}

// Resource is one configured PostgreSQL database.
type Resource struct {
	spec     tools.ResourceSpec
	adminCfg *pgxpool.Config
	credCfg  *pgxpool.Config
	meta     *metadataCache
	// installation marks minted roles (credential.go); nil until set.
	installation atomic.Pointer[string]

	mu     sync.Mutex
	admin  *pgxpool.Pool
	closed bool
}

var (
	_ tools.Resource    = (*Resource)(nil)
	_ tools.HandleNamer = (*Resource)(nil)
)

// Spec returns the resource's configuration.
func (r *Resource) Spec() tools.ResourceSpec { return r.spec }

// Reusable is true: a minted role serves every call of its lease.
func (r *Resource) Reusable() bool { return true }

// Handle is the role name minted for a lease: airlock_ and the lease id in
// lower-case letters and digits, or a hash of it when that would be empty or
// longer than 40 characters (names stay well under PostgreSQL's 63).
func (r *Resource) Handle(leaseID string) string { return RoleName(leaseID) }

// RoleName is the role minted for a lease id (see Resource.Handle).
func RoleName(leaseID string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(leaseID) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
		}
	}
	id := b.String()
	if id == "" || len(id) > 40 {
		sum := sha256.Sum256([]byte(leaseID))
		id = hex.EncodeToString(sum[:12])
	}
	return RolePrefix + id
}

func isOurRole(name string) bool {
	if !strings.HasPrefix(name, RolePrefix) || len(name) > 63 || len(name) == len(RolePrefix) {
		return false
	}
	for _, c := range name {
		if !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
			return false
		}
	}
	return true
}

// adminPool returns the admin pool, created on first use.
func (r *Resource) adminPool() (*pgxpool.Pool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("resource %s is closed", r.spec.Name)
	}
	if r.admin == nil {
		p, err := pgxpool.NewWithConfig(context.Background(), r.adminCfg)
		if err != nil {
			return nil, fmt.Errorf("resource %s: creating the admin pool: %w", r.spec.Name, err)
		}
		r.admin = p
	}
	return r.admin, nil
}

// Close closes the admin pool. Credentials own their pools and are closed by
// the lease manager.
func (r *Resource) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.admin != nil {
		r.admin.Close()
		r.admin = nil
	}
}

// Mint creates the lease's role:
//
//	CREATE ROLE airlock_<id> LOGIN INHERIT NOSUPERUSER ... CONNECTION LIMIT 8
//	  PASSWORD '<SCRAM verifier>' VALID UNTIL '<expiry, UTC>' IN ROLE <grant roles>
//
// INHERIT is required: the role uses its grant roles' privileges without
// SET ROLE (which Execute refuses). The password is 32 random bytes, sent
// to the server only as a SCRAM-SHA-256 verifier, so it never appears in the
// server's statement log. Minting a role that already exists (a retried
// lease) resets its password, expiry and memberships.
//
// With a req.Guard (a masking profile with `enforce: privileges`) the role
// joins no role: the grant roles' privileges are copied onto it, narrowed to
// the columns the guard does not protect (guard.go). The catalogs are read
// and the admin's right to grant checked before anything is created; a
// *GuardError says what is missing.
func (r *Resource) Mint(ctx context.Context, req tools.MintRequest) (tools.Credential, error) {
	if err := checkGrant(req.Grant); err != nil {
		return nil, fmt.Errorf("minting postgres role: grant %s: %w", req.GrantName, err)
	}
	role := req.Handle
	if role == "" {
		role = r.Handle(req.LeaseID)
	}
	if !isOurRole(role) {
		return nil, fmt.Errorf("minting postgres role %q: %w", role, ErrNotOurRole)
	}
	expires := req.Expires
	if expires.IsZero() {
		expires = time.Now().Add(req.Grant.TTL)
	}
	password, err := newPassword()
	if err != nil {
		return nil, fmt.Errorf("minting postgres role: %w", err)
	}
	verifier, err := scramVerifier(password)
	if err != nil {
		return nil, fmt.Errorf("minting postgres role: %w", err)
	}
	ident := pgx.Identifier{role}.Sanitize()
	roles := make([]string, len(req.Grant.Roles))
	for i, gr := range req.Grant.Roles {
		roles[i] = pgx.Identifier{gr}.Sanitize()
	}
	validUntil := expires.UTC().Format("2006-01-02 15:04:05.000000") + "+00"
	attrs := fmt.Sprintf("LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT %d PASSWORD %s VALID UNTIL %s",
		roleConnectionLimit, quoteLiteral(verifier), quoteLiteral(validUntil))

	pool, err := r.adminPool()
	if err != nil {
		return nil, err
	}
	var plan *guardPlan
	inRole := " IN ROLE " + strings.Join(roles, ", ")
	if req.Guard != nil {
		if plan, err = r.planGuard(ctx, pool, req.Grant.Roles, req.Guard); err != nil {
			return nil, fmt.Errorf("minting postgres role %s for resource %s: %w", role, r.spec.Name, err)
		}
		inRole = ""
	}
	mark, err := r.installationComment(ident)
	if err != nil {
		return nil, fmt.Errorf("minting postgres role %s for resource %s: %w", role, r.spec.Name, err)
	}
	_, err = pool.Exec(ctx, "CREATE ROLE "+ident+" "+attrs+inRole+mark)
	if pgErrorCode(err) == "42710" { // duplicate_object: a retried mint
		_, err = pool.Exec(ctx, "ALTER ROLE "+ident+" "+attrs+mark)
		switch {
		case err != nil:
		case plan == nil:
			_, err = pool.Exec(ctx, "GRANT "+strings.Join(roles, ", ")+" TO "+ident)
		default: // an enforced role is a member of nothing
			_, err = pool.Exec(ctx, "REVOKE "+strings.Join(roles, ", ")+" FROM "+ident)
		}
	}
	if err == nil && plan != nil && len(plan.grants) > 0 {
		// One implicit transaction: every grant or none.
		_, err = pool.Exec(ctx, plan.statements(ident))
	}
	if err != nil {
		return nil, fmt.Errorf("minting postgres role %s for resource %s: %w", role, r.spec.Name, adminError(err))
	}
	cred := newCredential(r, role, tools.NewSecret(password), expires, req.Grant)
	if plan != nil {
		cred.guard = req.Guard.GuardKey()
		cred.protected, cred.withheld = plan.protected, plan.withheld
	}
	return cred, nil
}

// Revoke terminates the role's sessions and drops it. If the role owns
// objects (a read_write lease that created a table), they are reassigned to
// the admin role and its privileges dropped first. A role that does not exist
// is not an error.
func (r *Resource) Revoke(ctx context.Context, lease tools.LeaseRef) error {
	role := lease.Handle
	if role == "" {
		role = r.Handle(lease.LeaseID)
	}
	if !isOurRole(role) {
		return fmt.Errorf("revoking postgres role %q: %w", role, ErrNotOurRole)
	}
	pool, err := r.adminPool()
	if err != nil {
		return err
	}
	ident := pgx.Identifier{role}.Sanitize()
	for attempt := 0; ; attempt++ {
		const terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1"
		_, err = pool.Exec(ctx, terminate, role)
		if pgErrorCode(err) == "42501" {
			// insufficient_privilege: an admin that is not a superuser may
			// signal only the sessions of roles it is a member of (an
			// enforced lease's role still has one open). A CREATEROLE
			// admin may make itself one, as for REASSIGN OWNED below.
			if _, gerr := pool.Exec(ctx, "GRANT "+ident+" TO CURRENT_USER"); gerr == nil {
				_, err = pool.Exec(ctx, terminate, role)
			}
		}
		if err == nil {
			_, err = pool.Exec(ctx, "DROP ROLE IF EXISTS "+ident)
		}
		code := pgErrorCode(err)
		// Up to three tries: privileges or objects to drop first (2BP01),
		// then a terminated backend still exiting (55006).
		if err == nil || attempt > 1 || (code != "2BP01" && code != "55006") {
			break
		}
		if code == "2BP01" { // dependent_objects_still_exist
			// Objects a read_write lease created go to a role that can do
			// nothing, never to the admin: a SECURITY DEFINER function or a
			// view left behind must not run with the admin's privileges.
			// DROP OWNED also revokes the privileges granted to the role
			// (an enforced lease holds its privileges directly).
			// Both need membership in the lease's role unless the admin is a
			// superuser; a CREATEROLE admin may grant itself that.
			if err2 := ensureRetiredOwner(ctx, pool); err2 == nil {
				// 0LP01: a superuser, or a member already. Any other error
				// shows again when DROP ROLE fails below.
				_, _ = pool.Exec(ctx, "GRANT "+ident+" TO CURRENT_USER")
				if _, err2 = pool.Exec(ctx, "REASSIGN OWNED BY "+ident+" TO "+pgx.Identifier{RetiredOwner}.Sanitize()); err2 == nil {
					_, _ = pool.Exec(ctx, "DROP OWNED BY "+ident)
				}
			}
			continue // nothing to wait for: retry at once
		}
		select { // object_in_use: a terminated backend has not exited yet
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("revoking postgres role %s: %w", role, ctx.Err())
		}
	}
	if err != nil {
		return fmt.Errorf("revoking postgres role %s for resource %s: %w", role, r.spec.Name, adminError(err))
	}
	return nil
}

// RetiredOwner owns what read_write leases created once their roles are
// dropped: NOLOGIN, member of nothing, granted nothing. Its name lacks the
// lease prefix, so orphan cleanup leaves it alone.
const RetiredOwner = "retired_by_airlock"

// ensureRetiredOwner creates RetiredOwner if it is missing and makes the
// admin a member of it, which REASSIGN OWNED requires.
func ensureRetiredOwner(ctx context.Context, pool *pgxpool.Pool) error {
	ident := pgx.Identifier{RetiredOwner}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE ROLE "+ident+" NOLOGIN NOINHERIT"); err != nil && pgErrorCode(err) != "42710" { // duplicate_object
		return err
	}
	if _, err := pool.Exec(ctx, "GRANT "+ident+" TO CURRENT_USER"); err != nil && pgErrorCode(err) != "0LP01" {
		// 0LP01 (invalid_grant_operation): the admin is a superuser or
		// already a member; REASSIGN works either way.
		return err
	}
	return nil
}

// Orphans lists the roles with Airlock's prefix that exist on the server
// and carry this installation's mark (credential.go); before an
// installation is set, every role with the prefix.
func (r *Resource) Orphans(ctx context.Context) ([]string, error) {
	pool, err := r.adminPool()
	if err != nil {
		return nil, err
	}
	rows, err := r.queryOurRoles(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("listing airlock roles on %s: %w", r.spec.Name, adminError(err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing airlock roles on %s: %w", r.spec.Name, adminError(err))
	}
	return names, nil
}

// quoteLiteral quotes a string we generated ourselves (base64 and digits) as
// an SQL literal. Quotes are doubled anyway; backslashes and NULs, which
// never occur in what we generate, are refused rather than escaped.
func quoteLiteral(s string) string {
	if strings.ContainsAny(s, "\\\x00") {
		panic("postgres: quoteLiteral of a value with a backslash or NUL")
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func pgErrorCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// adminError marks errors reaching the admin connection as the backend being
// unavailable; database errors pass through.
func adminError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if unavailableCode(pe.Code) {
			return fmt.Errorf("%w: %w", tools.ErrBackendUnavailable, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: PostgreSQL could not be reached: %w", tools.ErrBackendUnavailable, err)
}

// unavailableCode reports SQLSTATEs that mean the server is going or gone:
// class 08 (connection exception), admin/crash shutdown, cannot connect now.
func unavailableCode(code string) bool {
	return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03"
}
