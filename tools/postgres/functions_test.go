package postgres

import (
	"bytes"
	"context"
	"fmt"
	"go/format"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

const functionTableFile = "functions_pg15.go"

// catalogConn connects to a fresh PostgreSQL as its superuser.
func catalogConn(t testing.TB) (*testenv.Postgres, *pgx.Conn) {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.AdminDSN)
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	var major int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		t.Fatal(err)
	}
	if major != 15 {
		t.Fatalf("the function table is PostgreSQL 15's; the test server is PostgreSQL %d", major)
	}
	return pg, conn
}

// TestBuiltinFunctionTable checks functions_pg15.go against the catalog of
// a real PostgreSQL 15: every function initdb creates (pg_proc.oid below
// FirstNormalObjectId, 16384), by name, with the most volatile overload's
// volatility, whether every overload is leakproof, and the kinds; plus the
// built-in types a function-style cast can name, the functions that may
// return a row, and the operator names.
// UPDATE_PG_FUNCTIONS=1 rewrites the file from the catalog.
func TestBuiltinFunctionTable(t *testing.T) {
	_, conn := catalogConn(t)
	ctx := context.Background()
	got := generateFunctionTable(t, ctx, conn)
	if os.Getenv("UPDATE_PG_FUNCTIONS") != "" {
		if err := os.WriteFile(functionTableFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", functionTableFile)
		return
	}
	want, err := os.ReadFile(functionTableFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			g, w := line(gl, i), line(wl, i)
			if g != w {
				t.Fatalf("%s differs from the catalog at line %d:\n  catalog: %s\n  file:    %s\nregenerate it: UPDATE_PG_FUNCTIONS=1 go test -run TestBuiltinFunctionTable ./tools/postgres/", functionTableFile, i+1, g, w)
			}
		}
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<end of file>"
}

func generateFunctionTable(t *testing.T, ctx context.Context, conn *pgx.Conn) []byte {
	t.Helper()
	type entry struct {
		volatility byte
		leakproof  bool
		kinds      string
		retset     bool
	}
	rank := map[byte]int{'i': 0, 's': 1, 'v': 2}
	entries := map[string]*entry{}
	add := func(key string, vol byte, leakproof bool, kind byte, retset bool) {
		e := entries[key]
		if e == nil {
			e = &entry{volatility: vol, leakproof: leakproof}
			entries[key] = e
		}
		if rank[vol] > rank[e.volatility] {
			e.volatility = vol
		}
		e.leakproof = e.leakproof && leakproof
		e.retset = e.retset || retset
		if !strings.ContainsRune(e.kinds, rune(kind)) {
			k := []byte(e.kinds + string(kind))
			slices.Sort(k)
			e.kinds = string(k)
		}
	}
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, p.proname, p.provolatile::text, p.proleakproof, p.prokind::text, p.proretset
		FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		WHERE p.oid < 16384 ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	var schema, name, vol, kind string
	var leakproof, retset bool
	if _, err := pgx.ForEachRow(rows, []any{&schema, &name, &vol, &leakproof, &kind, &retset}, func() error {
		key := name
		switch schema {
		case "pg_catalog":
		case "information_schema":
			key = "information_schema." + name
		default:
			return fmt.Errorf("built-in function %s.%s in an unexpected schema", schema, name)
		}
		add(key, vol[0], leakproof, kind[0], retset)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A function-style cast (uuid('...')) names a type, not a function: it
	// runs the type's input function or a cast function to it.
	rows, err = conn.Query(ctx, `
		SELECT t.typname,
		       (SELECT max(CASE f.provolatile WHEN 'i' THEN 0 WHEN 's' THEN 1 ELSE 2 END)
		        FROM pg_catalog.pg_proc f
		        WHERE f.oid = t.typinput
		           OR f.oid IN (SELECT c.castfunc FROM pg_catalog.pg_cast c WHERE c.casttarget = t.oid))
		FROM pg_catalog.pg_type t
		WHERE t.oid < 16384 AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype IN ('b', 'd', 'e', 'm', 'r')
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var vrank int
	if _, err := pgx.ForEachRow(rows, []any{&name, &vrank}, func() error {
		if _, isFunction := entries[name]; !isFunction {
			add(name, "isv"[vrank], false, 't', false)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The functions whose result may be a row, for attribute notation:
	// (f(...)).x selects a field only when f can return one.
	rows, err = conn.Query(ctx, `
		SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_type t ON t.oid = p.prorettype
		WHERE p.oid < 16384 AND p.pronamespace = 'pg_catalog'::regnamespace
		  AND (t.typtype = 'c' OR p.prorettype IN ('record'::regtype, 'anyelement'::regtype, 'anynonarray'::regtype,
		                                           'anycompatible'::regtype, 'anycompatiblenonarray'::regtype))
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var rowFunctions []string
	if _, err := pgx.ForEachRow(rows, []any{&name}, func() error { rowFunctions = append(rowFunctions, name); return nil }); err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(ctx, `SELECT DISTINCT oprname FROM pg_catalog.pg_operator WHERE oid < 16384 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var operators []string
	if _, err := pgx.ForEachRow(rows, []any{&name}, func() error { operators = append(operators, name); return nil }); err != nil {
		t.Fatal(err)
	}

	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(`// Code generated by TestBuiltinFunctionTable from the catalog of PostgreSQL 15; DO NOT EDIT.
// Regenerate: UPDATE_PG_FUNCTIONS=1 go test -run TestBuiltinFunctionTable ./tools/postgres/

package postgres

// builtinFunctions holds every function initdb creates (pg_proc), by name
// (information_schema's prefixed with "information_schema."), and the
// built-in types a function-style cast can name (kind t).
var builtinFunctions = map[string]builtinFunction{
`)
	for _, k := range keys {
		e := entries[k]
		fmt.Fprintf(&b, "\t%q: {%q, %v, %q, %v},\n", k, e.volatility, e.leakproof, e.kinds, e.retset)
	}
	b.WriteString("}\n\n// builtinRowFunctions holds the names of the built-in functions of which an\n// overload may return a row (a composite type, record, or a polymorphic type).\nvar builtinRowFunctions = map[string]bool{\n")
	for _, fn := range rowFunctions {
		fmt.Fprintf(&b, "\t%q: true,\n", fn)
	}
	b.WriteString("}\n\n// builtinOperators holds the names of the built-in operators (pg_operator).\nvar builtinOperators = map[string]bool{\n")
	for _, op := range operators {
		fmt.Fprintf(&b, "\t%q: true,\n", op)
	}
	b.WriteString("}\n")
	out, err := format.Source(b.Bytes())
	if err != nil {
		t.Fatalf("formatting the table: %v", err)
	}
	return out
}

// notSQLText are the functions the catalog search below finds that neither
// run SQL text nor read a table named by text, each with why, grouped.
var notSQLText = map[string]string{}

func init() {
	for why, names := range map[string][]string{
		"reads the size of files, not their contents":                           {"pg_database_size", "pg_indexes_size", "pg_relation_size", "pg_table_size", "pg_tablespace_size", "pg_total_relation_size"},
		"reads or sets a sequence, not a table (nextval, setval are not reads)": {"currval", "nextval", "setval", "pg_sequence_last_value"},
		"reads the catalog or maintains an index (volatile: not a plain read)": {"pg_partition_ancestors", "pg_partition_tree", "pg_extension_config_dump", "pg_nextoid", "currtid2",
			"binary_upgrade_create_empty_extension", "binary_upgrade_set_missing_value", "brin_desummarize_range", "brin_summarize_new_values", "brin_summarize_range", "gin_clean_pending_list"},
		"reads or writes server files (a named side effect)": {"lo_export", "lo_import", "pg_current_logfile", "pg_ls_dir", "pg_ls_replslotdir", "pg_read_binary_file", "pg_read_file", "pg_read_file_old", "pg_stat_file"},
		"acts on replication or the WAL (volatile: not a plain read)": {"pg_backup_start", "pg_copy_logical_replication_slot", "pg_copy_physical_replication_slot", "pg_create_logical_replication_slot",
			"pg_create_physical_replication_slot", "pg_create_restore_point", "pg_drop_replication_slot", "pg_logical_emit_message", "pg_logical_slot_get_binary_changes",
			"pg_logical_slot_get_changes", "pg_logical_slot_peek_binary_changes", "pg_logical_slot_peek_changes", "pg_replication_origin_advance", "pg_replication_origin_create",
			"pg_replication_origin_drop", "pg_replication_origin_progress", "pg_replication_origin_session_setup", "pg_replication_slot_advance"},
		"reads or resets statistics":                               {"pg_stat_have_stats", "pg_stat_reset_replication_slot", "pg_stat_reset_shared", "pg_stat_reset_slru"},
		"notifies or changes a setting (a named side effect)":      {"pg_notify", "set_config"},
		"parses full-text search input, not SQL":                   {"phraseto_tsquery", "plainto_tsquery", "to_tsquery", "websearch_to_tsquery"},
		"parses or checks an XML document (XPath, not SQL)":        {"xml", "xml_is_well_formed", "xml_is_well_formed_content", "xml_is_well_formed_document", "xmlcomment", "xmlexists", "xmlvalidate"},
		"describes the columns of tables, like a catalog query":    {"database_to_xmlschema", "schema_to_xmlschema"},
		"manages or fetches from a dblink connection: no SQL text": {"dblink_build_sql_delete", "dblink_build_sql_insert", "dblink_build_sql_update", "dblink_cancel_query", "dblink_close", "dblink_connect", "dblink_connect_u", "dblink_disconnect", "dblink_error_message", "dblink_fetch", "dblink_get_notify", "dblink_get_pkey", "dblink_get_result", "dblink_is_busy"},
		"inspects a relation's storage by name (not built in: never a plain read)": {"verify_heapam", "bt_metap", "bt_page_items", "bt_page_stats", "heap_page_item_attrs", "tuple_data_split",
			"pg_freespace", "heap_force_freeze", "heap_force_kill", "pgrowlocks", "pg_relpages", "pgstatginindex", "pgstathashindex", "pgstatindex", "pgstattuple", "pgstattuple_approx"},
		"an index support function (internal arguments)": {"gin_extract_query_name", "gin_extract_query_text", "gin_extract_query_trgm"},
	} {
		for _, n := range names {
			notSQLText[n] = why
		}
	}
}

// TestSQLTextFunctionsCatalog repeats the search that found the functions
// sqltext.go follows, on a real PostgreSQL 15 with every contrib extension
// it can create: the built-in functions taking a text, name, regclass or
// refcursor argument that are volatile or whose name or C symbol mentions
// query, sql, xml, cursor or exec; and the extension functions taking such an
// argument whose name, C symbol or argument names mention query, sql, exec,
// cursor, crosstab, connectby, xpath_table, dblink, rel, tbl or table. Each
// one found must be followed or refused (textFunctions), or be listed in
// notSQLText with why it is neither; a PostgreSQL that adds such a function
// fails here until it is read and placed.
func TestSQLTextFunctionsCatalog(t *testing.T) {
	pg, conn := catalogConn(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE DATABASE extensions"); err != nil {
		t.Fatal(err)
	}
	ext, err := pgx.Connect(ctx, pg.DSN("extensions"))
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	rows, err := ext.Query(ctx, "SELECT name FROM pg_available_extensions WHERE installed_version IS NULL ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	available, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dblink", "tablefunc", "xml2"} {
		if !slices.Contains(available, name) {
			t.Fatalf("extension %s is not available: install PostgreSQL's contrib modules (Debian postgresql-15 ships them)", name)
		}
	}
	for _, name := range available {
		_, _ = ext.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
	}

	found := map[string]string{} // name → where
	query := func(c *pgx.Conn, where, sql string) {
		rows, err := c.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			found[n] = where
		}
	}
	const argTypes = `EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) a WHERE a IN ('text'::regtype, 'name'::regtype, 'regclass'::regtype, 'refcursor'::regtype))`
	query(conn, "built in", `SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p WHERE p.oid < 16384 AND `+argTypes+`
		AND (p.provolatile = 'v' OR p.proname ~ '(query|sql|xml|cursor|exec)' OR p.prosrc ~ '(query|sql|xml|cursor|exec)')`)
	query(ext, "extension", `SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p
		JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
		WHERE `+argTypes+`
		AND (p.proname ~ '(query|sql|exec|cursor|crosstab|connectby|xpath_table|dblink)' OR p.prosrc ~ '(query|sql|exec|cursor)'
		     OR EXISTS (SELECT 1 FROM unnest(p.proargnames) n WHERE n ~ '(query|sql|rel|tbl|table)'))`)
	for name, where := range found {
		_, followed := textFunctions[name]
		_, runsNothing := notSQLText[name]
		if !followed && !runsNothing && name != "cursor_to_xml" && name != "cursor_to_xmlschema" {
			t.Errorf("%s function %s takes text or a relation and is neither followed (sqltext.go) nor listed as running no SQL text (notSQLText): read what it does and place it", where, name)
		}
	}
	for name, tf := range textFunctions {
		if _, ok := found[name]; !ok {
			t.Errorf("%s (builtin %v) is followed but the catalog search does not find it: the search or the table is wrong", name, tf.builtin)
		}
	}
	if len(found) < 100 {
		t.Errorf("the search found only %d functions", len(found))
	}
}
