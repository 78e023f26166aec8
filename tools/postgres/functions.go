package postgres

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// How a statement's functions decide whether it is a plain read.
//
// Functions are classified from PostgreSQL's own catalog: functions_pg15.go
// is generated from pg_proc of PostgreSQL 15 (TestBuiltinFunctionTable, run
// with UPDATE_PG_FUNCTIONS=1 to regenerate it). A statement is not a plain
// read when it calls
//
//   - a function of the sideEffects table (a named reason, for the
//     explanation the agent and the approvers read);
//   - a function that is not built in: user-defined or from an extension,
//     its effects are unknown;
//   - a built-in function that is volatile (it may change the database or
//     the session), unless it is on the harmlessVolatile list.
//
// Names are matched as PostgreSQL resolves them: an unqualified name or one
// qualified with pg_catalog is the built-in function of that name (pg_catalog
// is searched first unless search_path lists it later); a name qualified
// with information_schema is one of its few built-in functions; any other
// schema is user-defined. Quoted names keep their case, so "Lower"(x) is not
// lower(x). The analysis does not see argument types: a function of a
// built-in name with other argument types in a schema on the search path, or
// a user-defined operator or cast behind a built-in operator name, is taken
// for the built-in one. BEGIN READ ONLY still bounds what such a function
// can do under a read-only grant. A call in attribute notation ((x).f, t.f)
// is classified like the call f(x); facts.go says when the facts take one
// for a call.

// builtinFunction is what the catalog says of the functions of one name.
// An overloaded name takes its most dangerous overload.
type builtinFunction struct {
	volatility byte   // 'i' immutable, 's' stable, 'v' volatile: the most volatile overload
	leakproof  bool   // every overload is leakproof
	kinds      string // prokind of the overloads (f function, a aggregate, w window, p procedure); t: a function-style cast to a built-in type
	retset     bool   // some overload returns a set (proretset)
}

// sideEffect is a function known to act outside the statement's own result:
// on other sessions, the server's files, large objects, sequences, other
// databases, or session state. A statement calling one is not read-only.
type sideEffect struct {
	name   string // lower-case, unqualified
	prefix bool   // name is a prefix: every function starting with it
	why    string
}

// sideEffects names why a function makes a call not read-only. It is
// matched against the unqualified, lower-cased name, so
// "pg_catalog.pg_terminate_backend" matches too. Every volatile built-in
// function off the harmlessVolatile list is not read-only either; this table
// gives the reason for the ones an explanation should name, and catches the
// few that are stable in the catalog but still act (txid_current assigns a
// transaction id).
var sideEffects = []sideEffect{
	{name: "pg_terminate_backend", why: "terminates other sessions"},
	{name: "pg_cancel_backend", why: "cancels other sessions' queries"},
	{name: "pg_reload_conf", why: "reloads the server configuration"},
	{name: "pg_rotate_logfile", why: "rotates the server log"},
	{name: "pg_promote", why: "promotes a standby"},
	{name: "pg_switch_wal", why: "forces a WAL switch"},
	{name: "pg_create_restore_point", why: "writes a WAL restore point"},
	{name: "pg_log_backend_memory_contexts", why: "writes to the server log"},
	{name: "pg_stat_reset", prefix: true, why: "resets statistics"},
	{name: "pg_read_file", why: "reads server files"},
	{name: "pg_read_binary_file", why: "reads server files"},
	{name: "pg_stat_file", why: "inspects server files"},
	{name: "pg_ls_", prefix: true, why: "lists server directories"},
	{name: "pg_file_", prefix: true, why: "writes server files (adminpack)"},
	{name: "lo_import", why: "reads a server file into a large object"},
	{name: "lo_export", why: "writes a large object to a server file"},
	{name: "lo_unlink", why: "deletes a large object"},
	{name: "lo_from_bytea", why: "creates a large object"},
	{name: "lo_put", why: "writes a large object"},
	{name: "lo_create", why: "creates a large object"},
	{name: "lo_creat", why: "creates a large object"},
	{name: "lo_truncate", why: "truncates a large object"},
	{name: "dblink", prefix: true, why: "connects to another database"},
	{name: "set_config", why: "changes session settings"},
	{name: "setseed", why: "changes the session's random seed"},
	{name: "nextval", why: "advances a sequence"},
	{name: "setval", why: "sets a sequence"},
	{name: "pg_advisory_", prefix: true, why: "takes or releases advisory locks"},
	{name: "pg_try_advisory_", prefix: true, why: "takes advisory locks"},
	{name: "txid_current", why: "assigns a transaction id"},
	{name: "pg_current_xact_id", why: "assigns a transaction id"},
	{name: "pg_notify", why: "notifies listeners"},
	{name: "pg_logical_emit_message", why: "writes to the WAL"},
	{name: "pg_create_physical_replication_slot", why: "creates a replication slot"},
	{name: "pg_create_logical_replication_slot", why: "creates a replication slot"},
	{name: "pg_drop_replication_slot", why: "drops a replication slot"},
	{name: "pg_replication_origin_", prefix: true, why: "changes replication origins"},
	{name: "pg_import_system_collations", why: "creates collations"},
}

// sideEffectOf returns why the function (lower-case, maybe qualified) is not
// read-only, or "" when it is not in the table.
func sideEffectOf(function string) string {
	name := function
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	for _, se := range sideEffects {
		if name == se.name || (se.prefix && strings.HasPrefix(name, se.name)) {
			return se.why
		}
	}
	return ""
}

// harmlessVolatile lists the volatile built-in functions a plain read may
// call, each with why it is harmless. Volatile means "may return something
// else each time, or act": these only read (a clock, a random source, a size
// on disk, the server's own state) or only wait, and what they read is not
// table data that tables_read would have to list.
var harmlessVolatile = map[string]string{
	"pg_sleep":       "only waits; the call's statement_timeout bounds it",
	"pg_sleep_for":   "only waits; the call's statement_timeout bounds it",
	"pg_sleep_until": "only waits; the call's statement_timeout bounds it",

	"random":          "returns a random number (setseed, which changes the session's seed, is not harmless)",
	"gen_random_uuid": "returns a random UUID",
	"clock_timestamp": "reads the clock",
	"timeofday":       "reads the clock",

	"pg_relation_size":       "reads the size of a relation's files, not their contents",
	"pg_total_relation_size": "reads the size of a relation's files, not their contents",
	"pg_table_size":          "reads the size of a table's files, not their contents",
	"pg_indexes_size":        "reads the size of a table's indexes, not their contents",
	"pg_database_size":       "reads the size of a database's files, not their contents",
	"pg_tablespace_size":     "reads the size of a tablespace's files, not their contents",

	"currval": "reads the value nextval last returned in this session (nextval itself is not harmless)",
	"lastval": "reads the value nextval last returned in this session (nextval itself is not harmless)",

	"pg_is_in_recovery":              "reads whether the server is a standby",
	"pg_current_wal_lsn":             "reads a WAL position",
	"pg_current_wal_insert_lsn":      "reads a WAL position",
	"pg_current_wal_flush_lsn":       "reads a WAL position",
	"pg_last_wal_receive_lsn":        "reads a WAL position",
	"pg_last_wal_replay_lsn":         "reads a WAL position",
	"pg_last_xact_replay_timestamp":  "reads a standby's replay time",
	"pg_is_wal_replay_paused":        "reads a standby's replay state",
	"pg_get_wal_replay_pause_state":  "reads a standby's replay state",
	"pg_blocking_pids":               "reads which sessions block another (for diagnosing locks)",
	"pg_safe_snapshot_blocking_pids": "reads which sessions block another (for diagnosing locks)",
	"pg_lock_status":                 "reads the lock table (pg_locks)",
	"pg_notification_queue_usage":    "reads how full the NOTIFY queue is",
	"pg_partition_tree":              "reads the catalog",
	"pg_partition_ancestors":         "reads the catalog",
	"pg_jit_available":               "reads whether JIT is available",
	"current_query":                  "reads the text of the running query",
	"txid_status":                    "reads a transaction's commit status",
	"pg_xact_status":                 "reads a transaction's commit status",

	// Functions that run SQL text or fetch from a cursor: the text is
	// analysed like the call's own SQL (sqltext.go), and a cursor's query
	// where the call declares it.
	"query_to_xml":               "runs SQL text, which is analysed like the call's own SQL",
	"query_to_xmlschema":         "runs SQL text, which is analysed like the call's own SQL",
	"query_to_xml_and_xmlschema": "runs SQL text, which is analysed like the call's own SQL",
	"ts_stat":                    "runs SQL text, which is analysed like the call's own SQL",
	"ts_rewrite":                 "runs SQL text, which is analysed like the call's own SQL",
	"cursor_to_xml":              "fetches from a cursor, whose query is analysed where the call declares it",
	"cursor_to_xmlschema":        "describes a cursor, whose query is analysed where the call declares it",
}

// builtinFunctionOf looks a function up as PostgreSQL would resolve the name
// (exact case, maybe qualified; see the comment at the top of this file).
func builtinFunctionOf(exact string) (builtinFunction, bool) {
	schema, name := splitName(exact)
	switch schema {
	case "", "pg_catalog":
		f, ok := builtinFunctions[name]
		return f, ok
	case "information_schema":
		f, ok := builtinFunctions["information_schema."+name]
		return f, ok
	}
	return builtinFunction{}, false
}

// splitName splits a possibly qualified name into its schema ("" when
// unqualified) and its last part; a catalog part (db.schema.name) is
// dropped: PostgreSQL accepts only the current database there.
func splitName(exact string) (schema, name string) {
	parts := strings.Split(exact, ".")
	name = parts[len(parts)-1]
	if len(parts) >= 2 {
		schema = parts[len(parts)-2]
	}
	return schema, name
}

// functionEffect says why calling the function keeps a statement from being
// a plain read, or "" when it does not. lower is the name as listed in
// sql.functions, exact as PostgreSQL resolves it.
func functionEffect(lower, exact string) string {
	if why := sideEffectOf(lower); why != "" {
		return fmt.Sprintf("function %s %s", lower, why)
	}
	f, ok := builtinFunctionOf(exact)
	if !ok {
		return fmt.Sprintf("function %s is not a built-in function of PostgreSQL, so its effects are unknown", exact)
	}
	if f.volatility == 'v' {
		if _, harmless := harmlessVolatile[functionBaseName(exact)]; !harmless {
			return fmt.Sprintf("function %s is volatile: it may change the database or the session", lower)
		}
	}
	return ""
}

// planTimeEffect says why planning a statement that calls the function may
// act, or "". EXPLAIN without ANALYZE runs nothing but the planner, which
// evaluates immutable and stable functions with constant arguments (never
// volatile ones): a function whose volatility is not known from the catalog
// may run, and so may a stable function with a side effect.
func planTimeEffect(lower, exact string) string {
	f, ok := builtinFunctionOf(exact)
	if !ok {
		return fmt.Sprintf("the planner may run function %s, which is not a built-in function of PostgreSQL, so its effects are unknown", exact)
	}
	if why := sideEffectOf(lower); why != "" && f.volatility != 'v' {
		return fmt.Sprintf("the planner may run function %s, which %s", lower, why)
	}
	return ""
}

// operatorEffect says why an operator keeps a statement from being a plain
// read: one whose name no built-in operator has is user-defined, and so is
// the function behind it.
func operatorEffect(exact string) string {
	schema, name := splitName(exact)
	if (schema == "" || schema == "pg_catalog") && builtinOperators[name] {
		return ""
	}
	return fmt.Sprintf("operator %s is not a built-in operator of PostgreSQL, so the function behind it has unknown effects", exact)
}

func functionBaseName(name string) string {
	return name[strings.LastIndexByte(name, '.')+1:]
}

// setReturning reports whether a call names a built-in function that
// returns a set in some overload (pg_proc.proretset), resolved as
// builtinFunctionOf resolves names. In a select list such a call yields as
// many rows as its arguments decide: generate_series(1, ascii(email))
// yields the code of a character.
func setReturning(names []*pg_query.Node) bool {
	schema, name := splitName(qualifiedName(names))
	switch schema {
	case "", "pg_catalog":
		return builtinFunctions[name].retset
	case "information_schema":
		return builtinFunctions["information_schema."+name].retset
	}
	return false
}
