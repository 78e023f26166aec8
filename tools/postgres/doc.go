// Package postgres serves PostgreSQL resources: the query_db, list_tables and
// describe_table tools, role minting for leases, and SQL facts from
// PostgreSQL's own parser (pganalyze/pg_query_go).
//
// # Credentials
//
// A lease is a role the broker creates with its admin connection and drops on
// revoke. PostgreSQL enforces the expiry (VALID UNTIL); revocation terminates
// the role's sessions first:
//
//	Mint    CREATE ROLE airlock_<lease> LOGIN INHERIT NOSUPERUSER ... CONNECTION LIMIT 8
//	          PASSWORD '<SCRAM-SHA-256 verifier of 32 random bytes>'
//	          VALID UNTIL '<expiry UTC>' IN ROLE <grant roles>
//	Revoke  SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1
//	        DROP ROLE IF EXISTS airlock_<lease>   (REASSIGN/DROP OWNED first if it owns objects)
//	Orphans SELECT rolname FROM pg_roles WHERE rolname LIKE 'airlock\_%'
//
// A lease minted for a masking profile with `enforce: privileges`
// (MintRequest.Guard) joins no role: the grant roles' privileges are copied
// onto it object by object, reads narrowed to the columns the profile does
// not protect, views over protected columns left out (guard.go), so
// PostgreSQL itself refuses the protected columns. The admin's right to
// grant is checked first; a *GuardError says what is missing.
//
// The plaintext password never leaves the broker: the server receives only
// its SCRAM verifier, and the Credential holds it as a tools.Secret.
//
// # One call
//
//	agent SQL ──Decode──▶ pg_query parse (syntax errors stop here, with position)
//	          ──Facts───▶ statement kinds, tables read/written, functions,
//	                      read_only; SQL in literal text arguments (query_to_xml,
//	                      ts_stat, …: sqltext.go) parsed and merged; functions
//	                      classified from pg_proc (functions.go). What cannot be
//	                      seen through (SQL text in a non-literal argument, DO,
//	                      grammar newer than PostgreSQL 15, …) is tools.Opaque:
//	                      refused before policy
//	          ──Execute─▶ refuse before the server sees anything:
//	                        transaction control, SET ROLE / SESSION AUTHORIZATION,
//	                        RESET ALL, DISCARD, changes to the limits and to
//	                        protected settings, several statements (unless
//	                        Limits.MultiStatement), anything but a plain read
//	                        under a read-only grant
//	                      connect as the lease's role (TCP, SCRAM; pooled per lease)
//	                      BEGIN READ ONLY            (read_write grant: BEGIN)
//	                      SET LOCAL statement_timeout, idle_in_transaction_session_timeout
//	                      each statement, extended protocol, text results
//	                      stream rows ──▶ cut at MaxRows / MaxBytes
//	                        (cut: cancel the query, discard the connection)
//	                      ROLLBACK                   (read_write grant: COMMIT)
//	                      + session reset in the same round trip (endCall):
//	                        advisory locks released, setseed, DEALLOCATE ALL,
//	                        RESET / DISCARD as the grant allows, so nothing a
//	                        call did to the session reaches the next call
//	          ──Render──▶ {"columns","rows","row_count","truncated","notice"} + text table
//	                      (whole values within 16 KiB; what was cut and how to get
//	                      the rest is said: render.go, docs/postgres.md)
//
// Result columns carry where their values come from (provenance.go): the
// row description's table OID and attribute number where PostgreSQL gives
// them, otherwise the columns the expression, view or CTE reads, resolved
// against the catalog (cached per resource), or unknown. The broker masks a
// column whose sources include a protected column, and every unknown column
// when the profile protects any, and says why in the result.
//
// Errors: database errors are *pgconn.PgError and read
// "ERROR: <message> (SQLSTATE xxxxx)", reduced to severity, SQLSTATE and a
// message that quotes only what the agent wrote (errors.go); a server that
// cannot be reached or goes away mid-call wraps tools.ErrBackendUnavailable;
// refusals wrap tools.ErrRefused; bad arguments wrap
// tools.ErrInvalidArguments.
package postgres
