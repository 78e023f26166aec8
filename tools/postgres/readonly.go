package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/tools"
)

// ReadOnlyCall reports whether the call can change nothing outside its
// result (tools.ReadOnlyCaller), so the broker may record it once, with
// its outcome: Execute runs it in BEGIN READ ONLY (a read-only grant, or
// statements the facts call plain reads: execution.readOnly), and nothing
// but PostgreSQL's own code can run in it (runsOnlyBuiltins). READ ONLY
// alone is not enough: it refuses writes to the database, not everything a
// function may do (pg_terminate_backend, pg_logical_emit_message, advisory
// locks, dblink), and the facts classify built-in functions by name; code
// of the database's own — a view's body, a row-level security policy, a
// function or operator that shadows a built-in — is what READ ONLY is left
// to bound, so such a call is recorded before it runs, like a write.
func (*QueryDB) ReadOnlyCall(ctx context.Context, c tools.Credential, args tools.Args) bool {
	a, ok := args.(*QueryArgs)
	cred, isCred := c.(*Credential)
	if !ok || !isCred || cred == nil || cred.resource == nil || a.parsed == nil {
		return false
	}
	if !queryExecution(nil, cred, tools.Limits{}, a.Params, a.parsed).readOnly() {
		return false
	}
	return cred.resource.runsOnlyBuiltins(ctx, cred.role, a.parsed) == ""
}

// runsOnlyBuiltins says why the statements may run code that is not built
// into PostgreSQL, or "" when they cannot: every relation they read is a
// table, partitioned table or materialized view without row-level
// security, no function they call has a name the database defines outside
// the built-ins, and the database defines no operator, cast or type with
// code of its own (those can run where a query names none: = on a column
// of such a type, an implicit cast, a domain's check). What it reads comes
// from the resource's catalog cache (one admin round trip when stale); a
// catalog that cannot be read says so, and the call is recorded before it
// runs.
func (r *Resource) runsOnlyBuiltins(ctx context.Context, role string, p *parsedSQL) string {
	cat := &catalog{r: r, ctx: ctx, now: time.Now(), role: role}
	g := cat.globals()
	switch {
	case g == nil:
		return "the catalog could not be read"
	case g.userCode != "":
		return g.userCode
	}
	for op := range g.userOps {
		return "operator " + op + " is not built in"
	}
	path := cat.searchPath()
	for _, st := range p.statements {
		for _, f := range st.facts.Functions {
			name := f[strings.LastIndexByte(f, '.')+1:]
			if g.userFuncs[name] {
				return "a function named " + name + " is not built in"
			}
		}
		for _, t := range st.facts.TablesRead {
			parts := strings.Split(t, ".")
			schema, name := "", parts[len(parts)-1]
			if len(parts) > 1 {
				schema = parts[len(parts)-2]
			}
			m, why := cat.lookup(schema, name, path)
			switch {
			case m == nil:
				return why
			case m.kind != 'r' && m.kind != 'p' && m.kind != 'm':
				return m.qname + " is not a table (a view's or foreign table's reads run its own code)"
			case m.rls:
				return m.qname + " has row-level security (its policies run on every read)"
			}
		}
	}
	return ""
}
