package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/tools"
)

// Red team of ReadOnlyCall (commit 8e09c0b): the broker records a call it
// says true for only with its outcome, so such a call runs unrecorded while
// airlock's store is down, and leaves no event if airlock dies in its first
// 100 ms. The contract (tools.ReadOnlyCaller) is "true only when the target
// refuses any write the call attempts". BEGIN READ ONLY refuses writes to
// tables and sequences, but not what acts outside the transaction:
// pg_terminate_backend and pg_cancel_backend (any role may signal the
// sessions of a role it is a member of, its own included),
// pg_logical_emit_message(false, ...) (a WAL message logical replication
// consumers receive whether or not the transaction commits; PUBLIC may run
// it), session advisory locks held while the call runs, dblink. The facts
// refuse those by name; they do not see the schema's own code: a view's
// body, a function of a built-in's name with other argument types
// (functions.go: "BEGIN READ ONLY still bounds what such a function can
// do"), a computed field, an operator. Nor is list_tables' own SQL safe: it
// calls lower() unqualified, so a schema's lower(character varying) runs in
// every list_tables.

// rogueSchemaSQL is schema code that terminates every other session of the
// role running it, from inside a READ ONLY transaction: a lower() for
// character varying (information_schema's text columns are a domain over
// it, so list_tables' lower(t.table_type) picks it over pg_catalog's
// lower(text)), and a view whose rows call it.
const rogueSchemaSQL = `
CREATE FUNCTION public.lower(v character varying) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
	 WHERE usename = current_user AND pid <> pg_catalog.pg_backend_pid();
	RETURN pg_catalog.lower(v::text);
END $$;
CREATE VIEW public.order_status AS SELECT id, public.lower(status::varchar) AS status FROM orders;
GRANT SELECT ON public.order_status TO app_readonly, app_readwrite;
`

// Either a call is recorded before it runs (the tool is no
// tools.ReadOnlyCaller, or says false), or it has no effect outside its
// transaction: none of these may terminate another session of the lease's
// role (another call on the same lease, in production) unrecorded. On
// 8e09c0b every case ended the victim's session; query_db is now recorded
// before it runs, and list_tables' and describe_table's catalog queries,
// every name in them qualified with pg_catalog, run none of the schema's
// code.
func TestRedTeamReadOnlyCallTerminatesOtherSessions(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, rogueSchemaSQL)
	ctx := context.Background()
	tests := []struct {
		name     string
		tool     tools.Tool
		grant    string
		args     map[string]any
		readOnly bool // what ReadOnlyCall must say
	}{
		{"list_tables' own catalog query", &ListTables{}, "readonly", map[string]any{}, true},
		{"describe_table's catalog queries", &DescribeTable{}, "readonly", map[string]any{"table": "orders"}, true},
		{"query_db: a view, read-only grant", &QueryDB{}, "readonly", map[string]any{"sql": "SELECT id, status FROM order_status"}, false},
		{"query_db: a view, read-write grant", &QueryDB{}, "readwrite", map[string]any{"sql": "SELECT id, status FROM order_status"}, false},
		{"query_db: a built-in's name, other argument type", &QueryDB{}, "readwrite", map[string]any{"sql": "SELECT lower('X'::varchar)"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cred := f.mint(t, tt.grant)
			tt.args["resource"] = "shop"
			raw, _ := json.Marshal(tt.args)
			a, err := tt.tool.Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			// The premise: the facts call it a plain read.
			if facts, err := tt.tool.Facts(a); err != nil || !facts.SQL.ReadOnly {
				t.Fatalf("facts: %+v, %v; want a plain read (the premise of this test)", facts.SQL, err)
			}
			ro, isCaller := tt.tool.(tools.ReadOnlyCaller)
			if got := isCaller && ro.ReadOnlyCall(cred, a); got != tt.readOnly {
				t.Errorf("ReadOnlyCall = %v, want %v", got, tt.readOnly)
			}

			// The victim: another session of the lease's role.
			pool, err := cred.connPool()
			if err != nil {
				t.Fatal(err)
			}
			victim, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer victim.Release()
			if err := victim.Ping(ctx); err != nil {
				t.Fatal(err)
			}

			if _, err := tt.tool.Execute(ctx, tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits(), CallID: "call-1"}, a); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := victim.Ping(pingCtx); err != nil {
				if tt.readOnly {
					t.Errorf("a call ReadOnlyCall says can change nothing terminated another session of role %s (victim: %v): "+
						"the broker records it only after it ran, so with the store down it acts unrecorded", cred.role, err)
				} else {
					t.Logf("as expected of code the analysis leaves to READ ONLY, the call ended another session (%v); it is recorded before it runs", err)
				}
			}
		})
	}
}

// What BEGIN READ ONLY does stop, as the lease's role: a write the facts
// do not see (the view's function writes a table) fails on the server, so
// nothing changes. Passes: the part of the claim that holds.
func TestRedTeamCommitReadOnlyStopsHiddenTableWrites(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, `
CREATE FUNCTION public.lower(v character varying) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	UPDATE public.customers SET balance = balance + 1;
	RETURN pg_catalog.lower(v::text);
END $$;`)
	before := f.checksum(t)
	cred := f.mint(t, "readwrite")
	_, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT lower('X'::varchar)"})
	if err == nil {
		t.Error("a hidden UPDATE inside a plain read ran without an error")
	}
	if after := f.checksum(t); after != before {
		t.Errorf("customers changed under BEGIN READ ONLY: %s → %s", before, after)
	}
}
