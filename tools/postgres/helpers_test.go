package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
)

// mapEnv is a tools.Environment backed by maps.
type mapEnv struct {
	vars  map[string]string
	files map[string]string
}

func (e mapEnv) Getenv(name string) (string, bool) { v, ok := e.vars[name]; return v, ok }
func (e mapEnv) ReadFile(path string) ([]byte, error) {
	if v, ok := e.files[path]; ok {
		return []byte(v), nil
	}
	return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
}

const fixtureSQL = `
CREATE ROLE app_readonly NOLOGIN;
CREATE ROLE app_readwrite NOLOGIN;
CREATE TABLE customers (
	id serial PRIMARY KEY,
	name text NOT NULL,
	email text UNIQUE,
	balance numeric(12,2) DEFAULT 0,
	active boolean DEFAULT true,
	created_at timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05+00',
	ref uuid,
	blob bytea,
	doc jsonb,
	score double precision
);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(12,2), status text);
CREATE INDEX orders_status ON orders (status);
INSERT INTO customers (name, email, balance, ref, blob, doc, score) VALUES
	('Ada', 'ada@example.com', 10.50, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef', '{"tier": "gold"}', 1.5),
	('Grace', 'grace@example.com', 20.00, NULL, NULL, NULL, NULL),
	('Linus', NULL, 0, NULL, NULL, '[1,2]', -2);
INSERT INTO orders (customer_id, total, status) VALUES (1, 99.99, 'paid'), (1, 5, 'open'), (2, 12.5, 'paid');
GRANT SELECT ON customers, orders TO app_readonly;
GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders TO app_readwrite;
GRANT USAGE ON SEQUENCE customers_id_seq, orders_id_seq TO app_readwrite;
`

// fixture is a private PostgreSQL with the customers schema, opened as a
// postgres resource with readonly and readwrite grants.
type fixture struct {
	pg       *testenv.Postgres
	resource *Resource
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, fixtureSQL)
	spec := tools.ResourceSpec{
		Name:        "shop",
		Kind:        KindName,
		AdminDSNEnv: "SHOP_ADMIN_DSN",
		Grants: map[string]tools.Grant{
			"readonly":  {Roles: []string{"app_readonly"}, TTL: 10 * time.Minute},
			"readwrite": {Roles: []string{"app_readwrite"}, TTL: 5 * time.Minute, Access: tools.AccessReadWrite},
		},
	}
	r, err := NewKind().Open(spec, mapEnv{vars: map[string]string{"SHOP_ADMIN_DSN": pg.AdminDSN}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(r.Close)
	return &fixture{pg: pg, resource: r.(*Resource)}
}

var leaseSeq int

// mint mints a credential under the named grant, closed at cleanup.
func (f *fixture) mint(t testing.TB, grant string) *Credential {
	t.Helper()
	leaseSeq++
	id := fmt.Sprintf("lease-%d-%d", time.Now().UnixNano(), leaseSeq)
	cred, err := f.resource.Mint(context.Background(), tools.MintRequest{
		LeaseID:   id,
		Handle:    f.resource.Handle(id),
		GrantName: grant,
		Grant:     f.resource.spec.Grants[grant],
		Expires:   time.Now().Add(f.resource.spec.Grants[grant].TTL),
	})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	c := cred.(*Credential)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func defaultLimits() tools.Limits {
	return tools.Limits{MaxRows: 500, MaxBytes: 1 << 20, Timeout: 10 * time.Second}
}

// query decodes and executes a query_db call.
func (f *fixture) query(t testing.TB, cred *Credential, limits tools.Limits, args map[string]any) (*tools.Output, error) {
	t.Helper()
	args["resource"] = "shop"
	raw, _ := json.Marshal(args)
	qdb := &QueryDB{}
	a, err := qdb.Decode(raw)
	if err != nil {
		return nil, err
	}
	return qdb.Execute(context.Background(), tools.Target{Resource: f.resource, Credential: cred, Limits: limits, CallID: "call-1"}, a)
}

// checksum is the customers table's row count and a digest of its rows.
func (f *fixture) checksum(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN)
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	var sum string
	if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(md5(string_agg(c::text, ',' ORDER BY id)), '') FROM customers c`).Scan(&n, &sum); err != nil {
		t.Fatalf("checksum: %v", err)
	}
	return fmt.Sprintf("%d/%s", n, sum)
}
