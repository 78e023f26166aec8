#!/usr/bin/env bash
# `make demo`: a throwaway PostgreSQL with sample data, and airlock in front of
# it on its embedded defaults plus examples/demo/airlock.yaml. Stays in the
# foreground; Ctrl-C stops airlock (which revokes every credential it minted)
# and then the database, and removes the database's files.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
airlock="$repo/bin/airlock"
pg_port="${AIRLOCK_DEMO_PG_PORT:-55432}"

say() { printf '\033[1m%s\033[0m\n' "$*"; }

# 1. PostgreSQL: install it if it is missing.
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "Installing PostgreSQL (Debian package postgresql)..."
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  else
    echo "PostgreSQL is not installed. Install it (Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql) and run make demo again." >&2
    exit 1
  fi
fi

# 2. A throwaway cluster in a temporary directory. PostgreSQL refuses to run
#    as root, so as root it runs as the postgres user.
work="$(mktemp -d -t airlock-demo.XXXXXX)"
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$work"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  set +e
  if [ -n "${airlock_pid:-}" ] && kill -0 "$airlock_pid" 2>/dev/null; then
    kill -TERM "$airlock_pid"; wait "$airlock_pid"
  fi
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1
  rm -rf "$work"
  say "Demo stopped: airlock revoked its credentials, the database is gone."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Starting a throwaway PostgreSQL on 127.0.0.1:$pg_port..."
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
"${as_pg[@]}" mkdir -p "$work/sock"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
  -o "-p $pg_port -k $work/sock -c listen_addresses=127.0.0.1" start >/dev/null
"${as_pg[@]}" "$pg_bin/psql" -q -h "$work/sock" -p "$pg_port" -U postgres -c "CREATE DATABASE shop" >/dev/null
"${as_pg[@]}" "$pg_bin/psql" -q -h "$work/sock" -p "$pg_port" -U postgres -d shop -v ON_ERROR_STOP=1 -f "$here/seed.sql" >/dev/null

# 3. Airlock's own admin credential, handed over by reference (the config names
#    the variable). Agents never see it.
export AIRLOCK_DEMO_ADMIN_DSN="host=$work/sock port=$pg_port user=postgres dbname=shop sslmode=disable"

config="$here/airlock.yaml"
cat <<MSG

$(say "Airlock is starting at http://127.0.0.1:8080/mcp")
Register it in your MCP client:

  Claude Code (HTTP):
    claude mcp add --transport http airlock http://127.0.0.1:8080/mcp

  Cursor (~/.cursor/mcp.json):
    { "mcpServers": { "airlock": { "url": "http://127.0.0.1:8080/mcp" } } }

  Claude Desktop (claude_desktop_config.json; stdio, the same config and database):
    { "mcpServers": { "airlock": {
        "command": "$airlock",
        "args": ["stdio", "--config", "$config"],
        "env": { "AIRLOCK_DEMO_ADMIN_DSN": "$AIRLOCK_DEMO_ADMIN_DSN" } } } }

Then ask the agent, for example:
  "Using airlock, show me the customers in the shop database."    (emails and cards come back masked)
  "Using airlock, drop the orders table."                          (denied by rule no-ddl)
  "Using airlock, mark order 3 as shipped."                        (needs a DBA's approval: refused until approvals are set up)

Review what happened:
  $airlock transcripts list --config $config
  $airlock transcripts verify --config $config

Ctrl-C stops everything.
MSG

"$airlock" serve --config "$config" &
airlock_pid=$!
wait "$airlock_pid"
