package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/tools"
)

func TestOpenValidation(t *testing.T) {
	grants := map[string]tools.Grant{"ro": {Roles: []string{"app_readonly"}, TTL: time.Minute}}
	env := mapEnv{
		vars:  map[string]string{"DSN": "host=/tmp port=5432 user=postgres password=hunter2-secret", "BAD": "host=x port=notaport password=hunter2-secret"},
		files: map[string]string{"/etc/dsn": "postgres://admin:hunter2-secret@db:5432/app"},
	}
	tests := []struct {
		name    string
		spec    tools.ResourceSpec
		wantErr string // substring; "" means success
	}{
		{"env", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", Grants: grants}, ""},
		{"file", tools.ResourceSpec{Name: "db", AdminDSNFile: "/etc/dsn", Grants: grants}, ""},
		{"neither", tools.ResourceSpec{Name: "db", Grants: grants}, "set admin_dsn_env"},
		{"both", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", AdminDSNFile: "/etc/dsn", Grants: grants}, "both admin_dsn_env and admin_dsn_file"},
		{"env unset", tools.ResourceSpec{Name: "db", AdminDSNEnv: "NOPE", Grants: grants}, "environment variable NOPE is not set"},
		{"file missing", tools.ResourceSpec{Name: "db", AdminDSNFile: "/nope", Grants: grants}, "reading /nope"},
		{"dsn does not parse", tools.ResourceSpec{Name: "db", AdminDSNEnv: "BAD", Grants: grants}, "from environment variable BAD does not parse"},
		{"ssh setting", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", Address: "x:22", Grants: grants}, "resource db: address is an ssh setting, not valid for kind postgres"},
		{"kube setting", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", KubeconfigFile: "/k", Grants: grants}, "kubeconfig_file is a kubernetes setting"},
		{"ca key", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", CAKeyFile: "/ca", Grants: grants}, "ca_key_file is an ssh setting"},
		{"no grants", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN"}, "no grants"},
		{"grant without roles", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", Grants: map[string]tools.Grant{"g": {TTL: time.Minute}}}, "grant g: roles is empty"},
		{"grant without ttl", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", Grants: map[string]tools.Grant{"g": {Roles: []string{"r"}}}}, "grant g: ttl must be positive"},
		{"bad access", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", Grants: map[string]tools.Grant{"g": {Roles: []string{"r"}, TTL: time.Minute, Access: "admin"}}}, `access "admin"`},
		{"grant with principals", tools.ResourceSpec{Name: "db", AdminDSNEnv: "DSN", Grants: map[string]tools.Grant{"g": {Roles: []string{"r"}, TTL: time.Minute, Principals: []string{"ops"}}}}, "principals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Kind = KindName
			r, err := NewKind().Open(tt.spec, env)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				r.Close()
				return
			}
			if err == nil {
				t.Fatalf("Open succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
				t.Fatalf("error %q does not contain %q (or wrap ErrConfig)", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the DSN's password: %q", err)
			}
		})
	}
}

func TestConnectHost(t *testing.T) {
	env := mapEnv{vars: map[string]string{"SOCK": "host=/run/pg port=6543 user=postgres dbname=app", "TCP": "host=db.internal port=5433 user=postgres dbname=app sslmode=disable"}}
	grants := map[string]tools.Grant{"ro": {Roles: []string{"r"}, TTL: time.Minute}}
	for _, tt := range []struct{ env, connectHost, wantHost string }{
		{"SOCK", "", "127.0.0.1"},
		{"TCP", "", "db.internal"},
		{"TCP", "10.0.0.9", "10.0.0.9"},
	} {
		r, err := NewKind().Open(tools.ResourceSpec{Name: "db", AdminDSNEnv: tt.env, ConnectHost: tt.connectHost, Grants: grants}, env)
		if err != nil {
			t.Fatal(err)
		}
		cc := r.(*Resource).credCfg.ConnConfig
		if cc.Host != tt.wantHost || cc.Database != "app" || cc.User != "" || cc.Password != "" {
			t.Errorf("%s/%q: host %q db %q user %q, want host %q db app and no user", tt.env, tt.connectHost, cc.Host, cc.Database, cc.User, tt.wantHost)
		}
		r.Close()
	}
}

func TestRoleName(t *testing.T) {
	for _, tt := range []struct{ lease, want string }{
		{"01J8Z3-ABCD", "airlock_01j8z3abcd"},
		{"4f6b2c1e-8d3a-4b5e-9f70-1a2b3c4d5e6f", "airlock_4f6b2c1e8d3a4b5e9f701a2b3c4d5e6f"},
	} {
		if got := RoleName(tt.lease); got != tt.want {
			t.Errorf("RoleName(%q) = %q, want %q", tt.lease, got, tt.want)
		}
	}
	for _, lease := range []string{"", "'; DROP ROLE postgres; --", strings.Repeat("x", 100)} {
		got := RoleName(lease)
		if !isOurRole(got) {
			t.Errorf("RoleName(%q) = %q is not a safe airlock role", lease, got)
		}
	}
}

func TestCredentialRedacts(t *testing.T) {
	c := newCredential(nil, "airlock_x", tools.NewSecret("s3cret-password"), time.Now(), tools.Grant{})
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), c.LogValue().String()} {
		if strings.Contains(s, "s3cret") {
			t.Fatalf("credential printed its password: %s", s)
		}
	}
}

func TestMintLoginAndRevoke(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cred := f.mint(t, "readonly")

	// The role logs in over TCP with SCRAM and reads what its grant role can.
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s password=%s sslmode=disable", f.pg.Port, cred.Handle(), cred.password.Reveal())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("minted role cannot log in: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 3 {
		t.Fatalf("reading customers: %v (n=%d)", err, n)
	}
	_, err = conn.Exec(ctx, "INSERT INTO customers (name) VALUES ('mallory')")
	if code := pgErrorCode(err); code != "42501" {
		t.Fatalf("insert under app_readonly: got %v, want SQLSTATE 42501", err)
	}
	var super, inherit bool
	var validUntil time.Time
	if err := conn.QueryRow(ctx, "SELECT rolsuper, rolinherit, rolvaliduntil FROM pg_roles WHERE rolname = current_user").Scan(&super, &inherit, &validUntil); err != nil {
		t.Fatal(err)
	}
	if super || !inherit || validUntil.Sub(cred.Expires()).Abs() > time.Millisecond {
		t.Fatalf("role attributes: super=%v inherit=%v valid until %v, want %v", super, inherit, validUntil, cred.Expires())
	}

	orphans, err := f.resource.Orphans(ctx)
	if err != nil || !slices.Contains(orphans, cred.Handle()) {
		t.Fatalf("Orphans = %v, %v; want it to list %s", orphans, err, cred.Handle())
	}

	// Revoke terminates the open session and drops the role.
	if err := f.resource.Revoke(ctx, tools.LeaseRef{Handle: cred.Handle()}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err == nil {
		t.Fatal("the revoked role's session still works")
	}
	orphans, err = f.resource.Orphans(ctx)
	if err != nil || slices.Contains(orphans, cred.Handle()) {
		t.Fatalf("Orphans after revoke = %v, %v", orphans, err)
	}
	if _, err := pgx.Connect(ctx, dsn); pgErrorCode(err) != "28P01" {
		t.Fatalf("login after revoke: %v, want SQLSTATE 28P01", err)
	}
	// Revoking again (a role that no longer exists) is not an error.
	if err := f.resource.Revoke(ctx, tools.LeaseRef{Handle: cred.Handle()}); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	// Never touches roles that are not ours.
	if err := f.resource.Revoke(ctx, tools.LeaseRef{Handle: "app_readonly"}); !errors.Is(err, ErrNotOurRole) {
		t.Fatalf("Revoke(app_readonly) = %v, want ErrNotOurRole", err)
	}
}

func TestMintIsIdempotent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := tools.MintRequest{LeaseID: "retry-1", Grant: f.resource.spec.Grants["readonly"], Expires: time.Now().Add(time.Minute)}
	first, err := f.resource.Mint(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer first.(*Credential).Close()
	second, err := f.resource.Mint(ctx, req)
	if err != nil {
		t.Fatalf("minting the same lease again: %v", err)
	}
	defer second.(*Credential).Close()
	out, err := f.query(t, second.(*Credential), defaultLimits(), map[string]any{"sql": "SELECT count(*) AS n FROM customers"})
	if err != nil || out.Table.Rows[0][0] != int64(3) {
		t.Fatalf("query with re-minted role: %v %v", out, err)
	}
}

func TestExpiredRoleIsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cred, err := f.resource.Mint(ctx, tools.MintRequest{
		LeaseID: "expired", Grant: f.resource.spec.Grants["readonly"], Expires: time.Now().Add(-time.Second),
	})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	c := cred.(*Credential)
	defer c.Close()
	_, err = f.query(t, c, defaultLimits(), map[string]any{"sql": "SELECT 1"})
	var pe *pgconn.PgError
	if !errors.Is(err, ErrLoginRefused) || !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("query with an expired role: %v, want ErrLoginRefused with SQLSTATE 28P01", err)
	}
}

// What a read_write lease created outlives its role, owned by a role that
// can do nothing — never by the admin, so a SECURITY DEFINER function left
// behind cannot run with the admin's privileges.
func TestRevokeHandsCreatedObjectsToAPowerlessRole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.pg.Exec(t, "GRANT CREATE ON SCHEMA public TO app_readwrite")
	cred := f.mint(t, "readwrite")
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s password=%s sslmode=disable", f.pg.Port, cred.Handle(), cred.password.Reveal())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CREATE TABLE left_behind (x int)",
		"CREATE FUNCTION peek() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM pg_authid'",
		"GRANT EXECUTE ON FUNCTION peek() TO PUBLIC",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn.Close(ctx)
	if err := f.resource.Revoke(ctx, tools.LeaseRef{Handle: cred.Handle()}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	owners := f.pg.Query(t, "postgres", `SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'left_behind'
		UNION ALL SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'peek'`)
	if len(owners) != 2 || owners[0] != RetiredOwner || owners[1] != RetiredOwner {
		t.Fatalf("owners after revoke = %v, want %s for both", owners, RetiredOwner)
	}
	// The function now runs as the powerless owner: reading pg_authid fails.
	reader := f.mint(t, "readonly")
	rdsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s password=%s sslmode=disable", f.pg.Port, reader.Handle(), reader.password.Reveal())
	rc, err := pgx.Connect(ctx, rdsn)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	var n int64
	if err := rc.QueryRow(ctx, "SELECT peek()").Scan(&n); pgErrorCode(err) != "42501" {
		t.Fatalf("the left-behind SECURITY DEFINER function: %v (n=%d), want SQLSTATE 42501", err, n)
	}
	if orphans, _ := f.resource.Orphans(ctx); slices.Contains(orphans, RetiredOwner) {
		t.Errorf("orphan cleanup would drop %s", RetiredOwner)
	}
}
