#!/usr/bin/env bash
# `make demo`: a throwaway PostgreSQL with sample data, and airlock in front of
# it on its embedded defaults plus examples/demo/airlock.yaml. Stays in the
# foreground; Ctrl-C stops airlock (which revokes every credential it minted)
# and then the database, and removes the database's files.
#
# What must outlive a run lives in examples/demo/.state/ (git-ignored): the
# admin connection string airlock reads (admin.dsn, with a password made on
# the first run), the SSH user CA and host key, known_hosts and the store.
# So a client registered once (Claude Desktop's stdio entry, `claude mcp
# add`) keeps working across `make demo` runs: the database is new each
# time, at the same address, with the same admin role and password.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
airlock="$repo/bin/airlock"
pg_port="${AIRLOCK_DEMO_PG_PORT:-55432}"

say() { printf '\033[1m%s\033[0m\n' "$*"; }

state="$here/.state"
mkdir -p "$state"; chmod 700 "$state"

# 1. PostgreSQL (and OpenSSH for the run_ssh part): install what is missing.
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null && { [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; }; then
  say "Installing OpenSSH server (Debian package openssh-server)..."
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
fi
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
  if [ -n "${sshd_pid:-}" ]; then kill "$sshd_pid" 2>/dev/null; wait "$sshd_pid" 2>/dev/null; fi
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
# On stdin: the postgres user may not be able to read a clone under a home directory.
"${as_pg[@]}" "$pg_bin/psql" -q -h "$work/sock" -p "$pg_port" -U postgres -d shop -v ON_ERROR_STOP=1 < "$here/seed.sql" >/dev/null

# Airlock's own admin role: not the superuser. It may create roles
# (CREATEROLE), hand out the grant roles (ADMIN OPTION), end a lease's
# sessions (pg_signal_backend), and, for the pii profile's enforce:
# privileges, hand out the grant roles' privileges column by column (WITH
# GRANT OPTION). Its password is made once and kept in .state/admin.dsn.
if [ ! -s "$state/admin.pw" ]; then
  (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$state/admin.pw")
fi
admin_pw="$(cat "$state/admin.pw")"
"${as_pg[@]}" "$pg_bin/psql" -q -h "$work/sock" -p "$pg_port" -U postgres -d shop -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE demo_admin LOGIN CREATEROLE PASSWORD '$admin_pw';
GRANT shop_reader, shop_writer TO demo_admin WITH ADMIN OPTION;
GRANT pg_signal_backend TO demo_admin;
GRANT CONNECT, TEMPORARY ON DATABASE shop TO demo_admin WITH GRANT OPTION;
GRANT USAGE ON SCHEMA public TO demo_admin WITH GRANT OPTION;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO demo_admin WITH GRANT OPTION;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO demo_admin WITH GRANT OPTION;
SQL
# The admin connects over TCP with its password, at an address that is the
# same on every run (the socket directory is not).
(umask 077; echo "host=127.0.0.1 port=$pg_port user=demo_admin password=$admin_pw dbname=shop sslmode=disable" > "$state/admin.dsn")

# 3. A private sshd on loopback that trusts airlock's user CA and nothing
#    else: no passwords, no authorized keys. Airlock signs a certificate per
#    call; the host's log shows the call id as the certificate's key id.
ssh_port=52222
ssh_note="run_ssh: demo-host is not available (needs root and openssh-server)."
if command -v ssh-keygen >/dev/null; then
  [ -f "$state/user_ca" ] || ssh-keygen -q -t ed25519 -N '' -C airlock-demo-user-ca -f "$state/user_ca"
  [ -f "$state/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C airlock-demo-host -f "$state/host_key"
  echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$state/host_key.pub")" > "$state/known_hosts"
fi
if [ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/sshd ] && [ -f "$state/host_key" ]; then
  id airlock-demo >/dev/null 2>&1 || useradd --create-home --shell /bin/bash airlock-demo
  usermod -p '*' airlock-demo   # unlocked, but no password: certificates only
  mkdir -p /run/sshd
  cat > "$work/sshd_config" <<SSHD
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $state/host_key
PidFile $work/sshd.pid
TrustedUserCAKeys $state/user_ca.pub
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowUsers airlock-demo
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
LogLevel VERBOSE
SSHD
  /usr/sbin/sshd -D -f "$work/sshd_config" -E "$work/sshd.log" &
  sshd_pid=$!
  ssh_note="run_ssh: demo-host is a private sshd on 127.0.0.1:$ssh_port (log: $work/sshd.log)."
  say "Started a private sshd on 127.0.0.1:$ssh_port for run_ssh."
fi

# 4. Airlock reads its admin credential from .state/admin.dsn (the config
#    names the file); agents never see it, and no registration embeds it.
config="$here/airlock.yaml"
cat <<MSG

$(say "Airlock is starting at http://127.0.0.1:8080/mcp — approvals in the browser: http://127.0.0.1:8080/ui")
Register it in your MCP client:

  Claude Code (HTTP, while make demo runs):
    claude mcp add --transport http airlock http://127.0.0.1:8080/mcp

  Claude Code (stdio: it starts airlock itself, on the same config and database):
    claude mcp add airlock -- $airlock stdio --config $config

  Cursor (~/.cursor/mcp.json):
    { "mcpServers": { "airlock": { "url": "http://127.0.0.1:8080/mcp" } } }

  Claude Desktop (claude_desktop_config.json; stdio, the same config and database):
    { "mcpServers": { "airlock": {
        "command": "$airlock",
        "args": ["stdio", "--config", "$config"] } } }

These stay valid across make demo runs: nothing in them changes.

Then ask the agent, for example:
  "Using airlock, show me the customers in the shop database."    (PostgreSQL itself refuses their emails and cards: enforce: privileges)
  "Using airlock, show me the orders and their notes."             (an email and a card number in the notes come back masked)
  "Using airlock, drop the orders table."                          (denied by rule no-ddl)
  "Using airlock, mark order 3 as shipped."                        (held for a DBA's approval: see below)
  "Using airlock, check the disk space and uptime of demo-host."   (run_ssh with a certificate minted for the call)
  "Using airlock, run rm -rf /tmp/x on demo-host."                 (denied by rule no-recursive-rm)

$ssh_note

Approve a held write in the browser (local mode: pick a name such as dora
and the group dba; loopback only):
  http://127.0.0.1:8080/ui
or from a terminal (the agent's call waits up to 45 s, then answers
"pending" with the approval id; after approval the same call runs):
  $airlock approvals list    --config $config
  $airlock approvals approve ID --config $config --as dora --groups dba --reason "looks right"

Review what happened:
  $airlock transcripts list --config $config
  $airlock transcripts verify --config $config

Ctrl-C stops everything.
MSG

"$airlock" serve --config "$config" &
airlock_pid=$!
wait "$airlock_pid"
