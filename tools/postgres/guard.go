package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/airlock-mcp/airlock/tools"
)

// Enforced leases (a masking profile with `enforce: privileges`).
//
// PostgreSQL cannot subtract a privilege a role inherits, so a role minted
// for a tools.ColumnGuard is a member of nothing. The mint copies, object by
// object, what the grant's roles may do, and narrows reads to the columns
// the guard does not protect:
//
//	database   CONNECT, TEMPORARY, CREATE
//	schemas    USAGE, CREATE
//	sequences  USAGE, SELECT, UPDATE
//	routines   EXECUTE                   (those PUBLIC may run are the role's anyway)
//	relations  SELECT, REFERENCES        column by column, never a protected column
//	           INSERT, UPDATE            as held: table-level, or column by column
//	           DELETE, TRUNCATE          as held
//	           TRIGGER                   only on relations without protected columns
//	views and materialized views that read a relation with protected
//	columns, directly or through other views, or whose definition calls a
//	function that is not built in or that runs SQL text (query_to_xml), or
//	that read the planner's statistics (pg_statistic), get nothing (views
//	declared security_invoker excepted: PostgreSQL checks their reads as the
//	caller; never a materialized view, whose rows are stored).
//
// A privilege PUBLIC already has is not granted (the role has it as every
// role does); a read of a protected column that PUBLIC has cannot be taken
// away, so the mint fails. What the grant's roles hold is asked with
// has_*_privilege, which answers as PostgreSQL decides access: through role
// membership (pg_read_all_data included), PUBLIC and ownership. The
// catalogs' ACLs (aclexplode) would show one grant at a time and leave the
// rest to be re-implemented here. What the admin may grant is asked the
// same way, WITH GRANT OPTION, before anything is created.

// guardPlan is what an enforced mint grants, computed from the catalogs.
type guardPlan struct {
	// grants are GRANT statements without their grantee: "GRANT ... ON ...".
	grants []string
	// protected are the protected columns the grant's roles could read
	// ("schema.table.column"), withheld the relations withheld whole; for
	// errors that explain a refusal.
	protected, withheld []string
}

// firstNormalObjectID is PostgreSQL's FirstNormalObjectId: every object
// initdb creates (the built-in functions of pg_catalog and
// information_schema among them) has a smaller OID, every object created
// afterwards (an extension's, a user's) a larger one.
const firstNormalObjectID = 16384

// statements returns the grants to role as one SQL text.
func (p *guardPlan) statements(ident string) string {
	var b strings.Builder
	for _, g := range p.grants {
		b.WriteString(g)
		b.WriteString(" TO ")
		b.WriteString(ident)
		b.WriteString(";\n")
	}
	return b.String()
}

// GuardError says why a lease could not be minted so that PostgreSQL
// enforces a masking profile: what the admin cannot grant, or what PUBLIC can
// already read. Nothing was created.
type GuardError struct {
	Resource string
	Admin    string
	// CannotGrant lists privileges the admin holds without GRANT OPTION (or
	// not at all), e.g. "SELECT (id, name) ON TABLE public.customers".
	CannotGrant []string
	// Public lists protected reads PUBLIC holds, e.g. "SELECT on public.customers.email".
	Public []string
}

// ErrGuard is what every *GuardError wraps.
var ErrGuard = errors.New("the masking profile's enforce: privileges cannot be applied")

func (e *GuardError) Error() string {
	var parts []string
	if len(e.Public) > 0 {
		parts = append(parts, fmt.Sprintf("PUBLIC can read what the profile protects (%s), which no grant can take away from a role: revoke it from PUBLIC and grant it to the grant's roles instead", listSome(e.Public, 5)))
	}
	if len(e.CannotGrant) > 0 {
		parts = append(parts, fmt.Sprintf("the admin role %s cannot grant %s: make it the owner of these objects, or grant it these privileges WITH GRANT OPTION", e.Admin, listSome(e.CannotGrant, 5)))
	}
	return fmt.Sprintf("%v on resource %s: %s", ErrGuard, e.Resource, strings.Join(parts, "; "))
}

func (e *GuardError) Unwrap() error { return ErrGuard }

// listSome joins the first n items and says how many more there are.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// Privileges on relations, in the order of relationPrivileges.
const (
	relSelect = iota
	relInsert
	relUpdate
	relDelete
	relTruncate
	relReferences
	relTrigger
)

var relationPrivileges = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}

// Column privileges, in the order of columnPrivileges, and the relation
// privilege each one is implied by.
const (
	colSelect = iota
	colInsert
	colUpdate
	colReferences
)

var (
	columnPrivileges = []string{"SELECT", "INSERT", "UPDATE", "REFERENCES"}
	columnOf         = []int{relSelect, relInsert, relUpdate, relReferences}
)

// userSchemas keeps the schemas whose objects a grant can be about: not the
// system catalogs (PUBLIC reads those), TOAST or other sessions' temporary
// schemas.
const userSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'`

// privilegeArrays returns three SQL arrays of booleans, one entry per
// privilege: what the grant's roles ($1, text[]) hold on obj, what PUBLIC
// holds, and what the admin (current_user) holds WITH GRANT OPTION. fn is a
// has_*_privilege function and obj its object arguments ("c.oid").
func privilegeArrays(fn, obj string, privs []string) (grant, public, admin string) {
	var g, p, a []string
	for _, priv := range privs {
		g = append(g, fmt.Sprintf("EXISTS (SELECT FROM unnest($1::text[]) AS g(r) WHERE pg_catalog.%s(g.r, %s, '%s'))", fn, obj, priv))
		p = append(p, fmt.Sprintf("pg_catalog.%s('public', %s, '%s')", fn, obj, priv))
		a = append(a, fmt.Sprintf("pg_catalog.%s(%s, '%s WITH GRANT OPTION')", fn, obj, priv))
	}
	join := func(xs []string) string { return "ARRAY[" + strings.Join(xs, ", ") + "]" }
	return join(g), join(p), join(a)
}

// The catalog queries of a plan, sent in one batch.
var (
	guardDatabaseSQL, guardSchemasSQL, guardSequencesSQL, guardRoutinesSQL, guardRelationsSQL string
)

// guardViewEdgesSQL lists, for every view and materialized view, the
// relations its query reads (pg_depend of its ON SELECT rule). A whole-row
// reference (row_to_json(c)) leaves only a whole-table dependency, so the
// edge is by relation, not by column. pg_depend records no dependency on
// what initdb created (pinned objects: the system catalogs, the built-in
// functions), so guardViewCallsSQL and guardViewStatisticsSQL read the
// rule's query tree for those.
const guardViewEdgesSQL = `SELECT DISTINCT r.ev_class, d.refobjid
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
WHERE r.ev_type = '1' AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> r.ev_class`

// guardViewCallsSQL lists, for every view and materialized view, the
// functions its query calls: every function call of its query tree
// (:funcid of a FUNCEXPR, built-in functions included), and the functions,
// aggregates and window functions its rule depends on, and those behind
// the operators it depends on (oprcode). A function that reads a table
// leaves no edge from the view to the table, so what such a view reads is
// not known.
const guardViewCallsSQL = `WITH r AS MATERIALIZED (
	SELECT r.oid, r.ev_class, r.ev_action FROM pg_catalog.pg_rewrite r
	JOIN pg_catalog.pg_class c ON c.oid = r.ev_class JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE r.ev_type = '1' AND ` + userSchemas + `
)
SELECT r.ev_class, p.oid, n.nspname, p.proname
FROM r
CROSS JOIN LATERAL pg_catalog.regexp_matches(r.ev_action::text, ':funcid ([0-9]+)', 'g') AS m
JOIN pg_catalog.pg_proc p ON p.oid = m[1]::oid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
UNION
SELECT r.ev_class, p.oid, n.nspname, p.proname
FROM r
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
LEFT JOIN pg_catalog.pg_operator o ON d.refclassid = 'pg_catalog.pg_operator'::regclass AND o.oid = d.refobjid
JOIN pg_catalog.pg_proc p ON p.oid = CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::regclass THEN d.refobjid ELSE o.oprcode::oid END
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass OR o.oid IS NOT NULL
ORDER BY 1, 2`

// guardViewStatisticsSQL lists the views and materialized views whose
// query reads the planner's statistics (a range table entry of
// pg_statistic or pg_statistic_ext_data), which sample the values of every
// column: pg_stats filters them by the caller's privileges, a view over
// pg_statistic reads them with its owner's.
const guardViewStatisticsSQL = `WITH r AS MATERIALIZED (
	SELECT r.ev_class, r.ev_action FROM pg_catalog.pg_rewrite r
	JOIN pg_catalog.pg_class c ON c.oid = r.ev_class JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE r.ev_type = '1' AND ` + userSchemas + `
)
SELECT r.ev_class FROM r
WHERE r.ev_action::text ~ (':relid (' || 'pg_catalog.pg_statistic'::regclass::oid || '|' || 'pg_catalog.pg_statistic_ext_data'::regclass::oid || ') ')`

func init() {
	g, p, a := privilegeArrays("has_database_privilege", "d.oid", []string{"CONNECT", "TEMPORARY", "CREATE"})
	guardDatabaseSQL = `SELECT d.datname, ` + g + `, ` + p + `, ` + a + `
FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()`

	g, p, a = privilegeArrays("has_schema_privilege", "n.oid", []string{"USAGE", "CREATE"})
	guardSchemasSQL = `SELECT n.nspname, ` + g + `, ` + p + `, ` + a + `
FROM pg_catalog.pg_namespace n WHERE ` + userSchemas + ` ORDER BY 1`

	g, p, a = privilegeArrays("has_sequence_privilege", "c.oid", []string{"USAGE", "SELECT", "UPDATE"})
	guardSequencesSQL = `SELECT n.nspname, c.relname, ` + g + `, ` + p + `, ` + a + `
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND ` + userSchemas + ` ORDER BY 1, 2`

	// Routines PUBLIC may run (the default) need no grant.
	g, p, a = privilegeArrays("has_function_privilege", "f.oid", []string{"EXECUTE"})
	guardRoutinesSQL = `SELECT n.nspname, f.proname, pg_catalog.pg_get_function_identity_arguments(f.oid), ` + g + `, ` + p + `, ` + a + `
FROM pg_catalog.pg_proc f JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace
WHERE ` + userSchemas + ` AND NOT pg_catalog.has_function_privilege('public', f.oid, 'EXECUTE') ORDER BY 1, 2, 3`

	// One row per column (relations without columns once, with NULLs).
	// Column privileges are asked only where the relation does not answer
	// for every column at once: has_column_privilege is true wherever the
	// table-level privilege is held, and false wherever
	// has_any_column_privilege is.
	g, p, a = privilegeArrays("has_table_privilege", "c.oid", relationPrivileges)
	ag, ap, _ := privilegeArrays("has_any_column_privilege", "c.oid", columnPrivileges)
	var cg, cp, ca []string
	for i, priv := range columnPrivileges {
		ri, ai := columnOf[i]+1, i+1 // SQL arrays count from 1
		cg = append(cg, fmt.Sprintf("CASE WHEN rel.g[%d] THEN true WHEN NOT rel.ag[%d] THEN false ELSE EXISTS (SELECT FROM unnest($1::text[]) AS g(r) WHERE pg_catalog.has_column_privilege(g.r, rel.oid, a.attnum, '%s')) END", ri, ai, priv))
		cp = append(cp, fmt.Sprintf("CASE WHEN rel.p[%d] THEN true WHEN NOT rel.ap[%d] THEN false ELSE pg_catalog.has_column_privilege('public', rel.oid, a.attnum, '%s') END", ri, ai, priv))
		ca = append(ca, fmt.Sprintf("CASE WHEN rel.a[%d] THEN true ELSE pg_catalog.has_column_privilege(rel.oid, a.attnum, '%s WITH GRANT OPTION') END", ri, priv))
	}
	guardRelationsSQL = `WITH rel AS MATERIALIZED (
	SELECT c.oid, n.nspname, c.relname, c.relkind::text AS kind, coalesce(c.reloptions, '{}') AS opts,
	       ` + g + ` AS g, ` + p + ` AS p, ` + a + ` AS a, ` + ag + ` AS ag, ` + ap + ` AS ap
	FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ` + userSchemas + `
)
SELECT rel.oid, rel.nspname, rel.relname, rel.kind, rel.opts, rel.g, rel.p, rel.a,
       a.attnum, a.attname,
       CASE WHEN a.attgenerated <> '' THEN ARRAY(
             SELECT d.refobjsubid FROM pg_catalog.pg_attrdef ad
             JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
              AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = ad.adrelid AND d.refobjsubid > 0
             WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum)::int2[] END,
       CASE WHEN a.attnum IS NOT NULL THEN ARRAY[` + strings.Join(cg, ", ") + `] END,
       CASE WHEN a.attnum IS NOT NULL THEN ARRAY[` + strings.Join(cp, ", ") + `] END,
       CASE WHEN a.attnum IS NOT NULL THEN ARRAY[` + strings.Join(ca, ", ") + `] END
FROM rel LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY rel.oid, a.attnum`
}

type guardRelation struct {
	oid          uint32
	schema, name string
	kind         string // pg_class.relkind
	invoker      bool   // a view with security_invoker
	g, p, a      []bool // relationPrivileges: grant's roles, PUBLIC, admin WITH GRANT OPTION
	cols         []guardColumn
	protected    bool // has a protected column
}

type guardColumn struct {
	num       int16
	name      string
	genDeps   []int16 // columns a generated column is computed from
	g, p, a   []bool  // columnPrivileges
	protected bool
}

func (r *guardRelation) qualified() string { return r.schema + "." + r.name }

func (r *guardRelation) ident() string { return pgx.Identifier{r.schema, r.name}.Sanitize() }

// planGuard reads the catalogs as the admin and computes the grants of an
// enforced lease for the grant's roles. It changes nothing.
func (r *Resource) planGuard(ctx context.Context, pool *pgxpool.Pool, roles []string, guard tools.ColumnGuard) (*guardPlan, error) {
	batch := &pgx.Batch{}
	batch.Queue("SELECT current_user")
	batch.Queue(guardDatabaseSQL, roles)
	batch.Queue(guardSchemasSQL, roles)
	batch.Queue(guardSequencesSQL, roles)
	batch.Queue(guardRoutinesSQL, roles)
	batch.Queue(guardRelationsSQL, roles)
	batch.Queue(guardViewEdgesSQL)
	batch.Queue(guardViewCallsSQL)
	batch.Queue(guardViewStatisticsSQL)
	br := pool.SendBatch(ctx, batch)
	defer br.Close()

	plan := &guardPlan{}
	ge := &GuardError{Resource: r.spec.Name}
	// want adds the privileges of one object that the grant's roles hold and
	// PUBLIC does not, and notes those the admin cannot grant.
	want := func(privs []string, g, p, a []bool, on string) []string {
		var out, missing []string
		for i, priv := range privs {
			if g[i] && !p[i] {
				out = append(out, priv)
				if !a[i] {
					missing = append(missing, priv)
				}
			}
		}
		if len(missing) > 0 {
			ge.CannotGrant = append(ge.CannotGrant, strings.Join(missing, ", ")+" ON "+on)
		}
		return out
	}

	if err := br.QueryRow().Scan(&ge.Admin); err != nil {
		return nil, adminError(err)
	}

	var (
		name    string
		g, p, a []bool
	)
	if err := br.QueryRow().Scan(&name, &g, &p, &a); err != nil {
		return nil, adminError(err)
	}
	on := "DATABASE " + pgx.Identifier{name}.Sanitize()
	if privs := want([]string{"CONNECT", "TEMPORARY", "CREATE"}, g, p, a, on); len(privs) > 0 {
		plan.grants = append(plan.grants, "GRANT "+strings.Join(privs, ", ")+" ON "+on)
	}

	rows, err := br.Query()
	if err != nil {
		return nil, adminError(err)
	}
	_, err = pgx.ForEachRow(rows, []any{&name, &g, &p, &a}, func() error {
		on := "SCHEMA " + pgx.Identifier{name}.Sanitize()
		if privs := want([]string{"USAGE", "CREATE"}, g, p, a, on); len(privs) > 0 {
			plan.grants = append(plan.grants, "GRANT "+strings.Join(privs, ", ")+" ON "+on)
		}
		return nil
	})
	if err != nil {
		return nil, adminError(err)
	}

	var schema string
	if rows, err = br.Query(); err != nil {
		return nil, adminError(err)
	}
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &g, &p, &a}, func() error {
		on := "SEQUENCE " + pgx.Identifier{schema, name}.Sanitize()
		if privs := want([]string{"USAGE", "SELECT", "UPDATE"}, g, p, a, on); len(privs) > 0 {
			plan.grants = append(plan.grants, "GRANT "+strings.Join(privs, ", ")+" ON "+on)
		}
		return nil
	})
	if err != nil {
		return nil, adminError(err)
	}

	var args string
	if rows, err = br.Query(); err != nil {
		return nil, adminError(err)
	}
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &args, &g, &p, &a}, func() error {
		// The identity arguments are PostgreSQL's own rendering of the
		// argument types (format_type quotes what needs quoting).
		on := "ROUTINE " + pgx.Identifier{schema, name}.Sanitize() + "(" + args + ")"
		if privs := want([]string{"EXECUTE"}, g, p, a, on); len(privs) > 0 {
			plan.grants = append(plan.grants, "GRANT "+strings.Join(privs, ", ")+" ON "+on)
		}
		return nil
	})
	if err != nil {
		return nil, adminError(err)
	}

	rels, err := scanGuardRelations(br)
	if err != nil {
		return nil, adminError(err)
	}
	edges := map[uint32][]uint32{} // view → relations it reads
	opaque := map[uint32]string{}  // view → why what it reads is not known
	var view, read, fn uint32
	if rows, err = br.Query(); err != nil {
		return nil, adminError(err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&view, &read}, func() error {
		edges[view] = append(edges[view], read)
		return nil
	}); err != nil {
		return nil, adminError(err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, adminError(err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&view, &fn, &schema, &name}, func() error {
		if why := opaqueCall(fn, schema, name); why != "" && opaque[view] == "" {
			opaque[view] = why
		}
		return nil
	}); err != nil {
		return nil, adminError(err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, adminError(err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&view}, func() error {
		opaque[view] = "a view over pg_statistic, which samples every column's values"
		return nil
	}); err != nil {
		return nil, adminError(err)
	}
	if err := br.Close(); err != nil {
		return nil, adminError(err)
	}

	// Protected columns: those a rule names, and generated columns computed
	// from them.
	byOID := make(map[uint32]*guardRelation, len(rels))
	for _, rel := range rels {
		byOID[rel.oid] = rel
		named := map[int16]bool{}
		for i := range rel.cols {
			c := &rel.cols[i]
			if guard.Protects(rel.schema, rel.name, c.name) {
				c.protected, named[c.num] = true, true
			}
		}
		for i := range rel.cols {
			c := &rel.cols[i]
			for _, d := range c.genDeps {
				if d != c.num && named[d] {
					c.protected = true
				}
			}
			rel.protected = rel.protected || c.protected
		}
	}
	// Relations that may read protected values, and why: those with
	// protected columns; views that call a function that may read any
	// table, or read the statistics (when anything is protected at all);
	// views over any of them, to any depth (a fixed point over the edges).
	reads := map[uint32]string{}
	anyProtected := false
	for _, rel := range rels {
		if rel.protected {
			reads[rel.oid], anyProtected = "a view over protected columns", true
		}
	}
	if anyProtected {
		for v, why := range opaque {
			reads[v] = why
		}
	}
	for changed := true; changed; {
		changed = false
		for v, deps := range edges {
			if reads[v] != "" {
				continue
			}
			for _, d := range deps {
				if reads[d] != "" {
					reads[v], changed = "a view over protected columns", true
					break
				}
			}
		}
	}

	for _, rel := range rels {
		withheld := reads[rel.oid] != "" && (rel.kind == "m" || (rel.kind == "v" && !rel.invoker))
		if withheld {
			// A view runs with its owner's privileges and a materialized
			// view's rows are stored: a read of either would bypass the
			// column privileges of what it reads. It gets nothing, and a
			// read PUBLIC has on it fails the mint.
			if rel.p[relSelect] || rel.p[relReferences] || rel.p[relTrigger] || anyColumn(rel, colSelect, true) {
				ge.Public = append(ge.Public, "SELECT on "+rel.qualified()+" ("+reads[rel.oid]+")")
			}
			if rel.g[relSelect] || anyColumn(rel, colSelect, false) {
				plan.withheld = append(plan.withheld, rel.qualified())
			}
			continue
		}
		plan.grants = append(plan.grants, relationGrants(rel, plan, ge)...)
	}
	if len(ge.CannotGrant) > 0 || len(ge.Public) > 0 {
		return nil, ge
	}
	slices.Sort(plan.protected)
	slices.Sort(plan.withheld)
	return plan, nil
}

// opaqueCall says why a view that calls the function may read what no edge
// of pg_depend shows, or "": a function initdb did not create may read any
// table, and a built-in one that runs SQL text (query_to_xml) reads what
// the text names.
func opaqueCall(oid uint32, schema, name string) string {
	switch {
	case oid >= firstNormalObjectID:
		return fmt.Sprintf("a view that calls %s.%s, a function that is not built in, which may read any table", schema, name)
	case runsSQLText(name):
		return fmt.Sprintf("a view that calls %s, which runs SQL given as text", name)
	}
	return ""
}

// anyColumn reports whether some column holds privilege i, for PUBLIC or for
// the grant's roles.
func anyColumn(rel *guardRelation, i int, public bool) bool {
	for _, c := range rel.cols {
		if (public && c.p[i]) || (!public && c.g[i]) {
			return true
		}
	}
	return false
}

// relationGrants returns the GRANT statements for one relation that is not
// withheld: reads column by column, never of a protected column; writes as
// held; TRIGGER only where nothing is protected (a trigger function sees
// whole rows).
func relationGrants(rel *guardRelation, plan *guardPlan, ge *GuardError) []string {
	on := "TABLE " + rel.ident()
	var privs, missing []string
	add := func(priv string, admin bool) {
		privs = append(privs, priv)
		if !admin {
			missing = append(missing, priv)
		}
	}
	// Column-level reads: SELECT and REFERENCES (a foreign key is a test of
	// values), on the unprotected columns. Granted per column even where the
	// grant's roles hold them table-wide, so a column added later is not
	// readable under a live lease.
	for _, ci := range []int{colSelect, colReferences} {
		var cols, colsMissing []string
		for _, c := range rel.cols {
			switch {
			case c.protected && c.p[ci]:
				ge.Public = append(ge.Public, columnPrivileges[ci]+" on "+rel.qualified()+"."+c.name)
			case c.protected:
				if ci == colSelect && c.g[ci] {
					plan.protected = append(plan.protected, rel.qualified()+"."+c.name)
				}
			case c.g[ci] && !c.p[ci]:
				cols = append(cols, pgx.Identifier{c.name}.Sanitize())
				if !c.a[ci] {
					colsMissing = append(colsMissing, pgx.Identifier{c.name}.Sanitize())
				}
			}
		}
		if len(cols) > 0 {
			privs = append(privs, columnPrivileges[ci]+" ("+strings.Join(cols, ", ")+")")
		}
		if len(colsMissing) > 0 {
			missing = append(missing, columnPrivileges[ci]+" ("+strings.Join(colsMissing, ", ")+")")
		}
	}
	// Writes: table-level where held so, else column by column.
	for _, ci := range []int{colInsert, colUpdate} {
		ri := columnOf[ci]
		if rel.g[ri] {
			if !rel.p[ri] {
				add(relationPrivileges[ri], rel.a[ri])
			}
			continue
		}
		var cols, colsMissing []string
		for _, c := range rel.cols {
			if c.g[ci] && !c.p[ci] {
				cols = append(cols, pgx.Identifier{c.name}.Sanitize())
				if !c.a[ci] {
					colsMissing = append(colsMissing, pgx.Identifier{c.name}.Sanitize())
				}
			}
		}
		if len(cols) > 0 {
			privs = append(privs, columnPrivileges[ci]+" ("+strings.Join(cols, ", ")+")")
		}
		if len(colsMissing) > 0 {
			missing = append(missing, columnPrivileges[ci]+" ("+strings.Join(colsMissing, ", ")+")")
		}
	}
	for _, ri := range []int{relDelete, relTruncate} {
		if rel.g[ri] && !rel.p[ri] {
			add(relationPrivileges[ri], rel.a[ri])
		}
	}
	switch {
	case rel.protected && rel.p[relTrigger]:
		ge.Public = append(ge.Public, "TRIGGER on "+rel.qualified())
	case !rel.protected && rel.g[relTrigger] && !rel.p[relTrigger]:
		add("TRIGGER", rel.a[relTrigger])
	}
	if len(missing) > 0 {
		ge.CannotGrant = append(ge.CannotGrant, strings.Join(missing, ", ")+" ON "+on)
	}
	if len(privs) == 0 {
		return nil
	}
	return []string{"GRANT " + strings.Join(privs, ", ") + " ON " + on}
}

// scanGuardRelations reads guardRelationsSQL's rows into relations.
func scanGuardRelations(br pgx.BatchResults) ([]*guardRelation, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	var (
		oid          uint32
		schema, name string
		kind         string
		opts         []string
		g, p, a      []bool
		attnum       *int16
		attname      *string
		genDeps      []int16
		cg, cp, ca   []bool
		rels         []*guardRelation
		last         *guardRelation
	)
	_, err = pgx.ForEachRow(rows, []any{&oid, &schema, &name, &kind, &opts, &g, &p, &a, &attnum, &attname, &genDeps, &cg, &cp, &ca}, func() error {
		if last == nil || last.oid != oid {
			last = &guardRelation{oid: oid, schema: schema, name: name, kind: kind, invoker: securityInvoker(opts),
				g: slices.Clone(g), p: slices.Clone(p), a: slices.Clone(a)}
			rels = append(rels, last)
		}
		if attnum != nil && attname != nil {
			last.cols = append(last.cols, guardColumn{num: *attnum, name: *attname, genDeps: slices.Clone(genDeps),
				g: slices.Clone(cg), p: slices.Clone(cp), a: slices.Clone(ca)})
		}
		return nil
	})
	return rels, err
}

// securityInvoker reports whether reloptions set security_invoker to a value
// PostgreSQL reads as true. Anything else counts as false: the view is then
// withheld, which is the safe side.
func securityInvoker(opts []string) bool {
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if ok && strings.EqualFold(k, "security_invoker") {
			switch strings.ToLower(v) {
			case "true", "on", "yes", "1", "t", "y":
				return true
			}
			return false
		}
	}
	return false
}
