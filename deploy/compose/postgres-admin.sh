#!/bin/bash
# Runs once, when the postgres service first creates its database (after
# 10-seed.sql, examples/demo/seed.sql): airlock's own admin role, as make
# demo makes it (examples/demo/run.sh). Not the superuser: it may create
# roles (CREATEROLE), hand out the grant roles (ADMIN OPTION), end a lease's
# sessions (pg_signal_backend) and, for the pii profile's enforce:
# privileges, hand out the grant roles' privileges column by column (WITH
# GRANT OPTION). Its password was made by the keys service.
set -euo pipefail
keys="${AIRLOCK_DEMO_KEYS:-/keys}"   # the demo-keys volume
admin_pw="$(cat "$keys/admin.pw")"
psql -v ON_ERROR_STOP=1 -v admin_pw="$admin_pw" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE demo_admin LOGIN CREATEROLE PASSWORD :'admin_pw';
GRANT shop_reader, shop_writer TO demo_admin WITH ADMIN OPTION;
GRANT pg_signal_backend TO demo_admin;
GRANT CONNECT, TEMPORARY ON DATABASE shop TO demo_admin WITH GRANT OPTION;
GRANT USAGE ON SCHEMA public TO demo_admin WITH GRANT OPTION;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO demo_admin WITH GRANT OPTION;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO demo_admin WITH GRANT OPTION;
SQL
