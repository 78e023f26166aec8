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
"${as_pg[@]}" "$pg_bin/psql" -q -h "$work/sock" -p "$pg_port" -U postgres -d shop -v ON_ERROR_STOP=1 -f "$here/seed.sql" >/dev/null

# 3. A private sshd on loopback that trusts airlock's user CA and nothing
#    else: no passwords, no authorized keys. Airlock signs a certificate per
#    call; the host's log shows the call id as the certificate's key id.
ssh_port=52222
ssh_note="run_ssh: demo-host is not available (needs root and openssh-server)."
state="$here/.state"
mkdir -p "$state"; chmod 700 "$state"
if command -v ssh-keygen >/dev/null; then
  [ -f "$state/user_ca" ] || ssh-keygen -q -t ed25519 -N '' -C airlock-demo-user-ca -f "$state/user_ca"
  ssh-keygen -q -t ed25519 -N '' -C airlock-demo-host -f "$work/host_key"
  echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$work/host_key.pub")" > "$state/known_hosts"
fi
if [ "$(id -u)" -eq 0 ] && [ -x /usr/sbin/sshd ] && [ -f "$work/host_key" ]; then
  id airlock-demo >/dev/null 2>&1 || useradd --create-home --shell /bin/bash airlock-demo
  usermod -p '*' airlock-demo   # unlocked, but no password: certificates only
  mkdir -p /run/sshd
  cat > "$work/sshd_config" <<SSHD
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $work/host_key
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

# 4. Airlock's own admin credential, handed over by reference (the config names
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
  "Using airlock, mark order 3 as shipped."                        (held for a DBA's approval: see below)
  "Using airlock, check the disk space and uptime of demo-host."   (run_ssh with a certificate minted for the call)
  "Using airlock, run rm -rf /tmp/x on demo-host."                 (denied by rule no-recursive-rm)

$ssh_note

Approve a held write (the agent's call waits up to 60 s, then answers
"pending" with the approval id; after approval the same call runs):
  $airlock approvals list    --config $config --as dora --groups dba
  $airlock approvals approve ID --config $config --as dora --groups dba --reason "looks right"

Review what happened:
  $airlock transcripts list --config $config
  $airlock transcripts verify --config $config

Ctrl-C stops everything.
MSG

"$airlock" serve --config "$config" &
airlock_pid=$!
wait "$airlock_pid"
