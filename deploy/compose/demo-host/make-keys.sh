#!/bin/sh
# airlock-demo-keys DIR: the compose quick-start's secrets, made once (a
# file that exists is kept, so the keys outlive `docker compose down`;
# `down -v` removes them). Each private file is readable only by its user:
#   user_ca      airlock's SSH user CA (airlock, UID 65532)
#   admin.dsn    demo_admin's connection string (airlock, UID 65532)
#   admin.pw     demo_admin's password (postgres, UID 999, at database init)
#   postgres.pw  the PostgreSQL superuser's password (postgres, UID 999)
#   host_key     the demo host's key (sshd, root)
# and, public: user_ca.pub (the demo host trusts it), known_hosts (airlock
# verifies the demo host with it).
set -eu
dir="${1:?usage: airlock-demo-keys DIR}"
pg_port="${AIRLOCK_DEMO_PG_PORT:-55432}"
ssh_port="${AIRLOCK_DEMO_SSH_PORT:-52222}"
umask 077
random() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
[ -s "$dir/user_ca" ] || ssh-keygen -q -t ed25519 -N '' -C airlock-demo-user-ca -f "$dir/user_ca"
[ -s "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C airlock-demo-host -f "$dir/host_key"
[ -s "$dir/admin.pw" ] || random > "$dir/admin.pw"
[ -s "$dir/postgres.pw" ] || random > "$dir/postgres.pw"
echo "host=127.0.0.1 port=$pg_port user=demo_admin password=$(cat "$dir/admin.pw") dbname=shop sslmode=disable" > "$dir/admin.dsn"
echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"
chown 65532:65532 "$dir/user_ca" "$dir/admin.dsn"
chown 999:999 "$dir/admin.pw" "$dir/postgres.pw"
chown 0:0 "$dir/host_key"
chmod 0400 "$dir/user_ca" "$dir/admin.dsn" "$dir/admin.pw" "$dir/postgres.pw"
chmod 0600 "$dir/host_key"
chmod 0444 "$dir/user_ca.pub" "$dir/host_key.pub" "$dir/known_hosts"
chmod 0755 "$dir"
echo "demo keys ready in $dir"
