#!/usr/bin/env bash
# Brings up the Redis and Postgres that Signalbox and its tests need, on loopback, when they are
# missing, and writes their URLs to var/local.env.
#
#   bash deploy/local/up.sh            # start (idempotent), print what it did
#   bash deploy/local/up.sh --quiet    # only errors
#
# - A server the user configured (REDIS_URL or DATABASE_URL set in the environment) is never
#   started, stopped or changed: it is only checked for reachability.
# - Otherwise project-local servers run on 127.0.0.1 on their own ports (Redis 6390, Postgres
#   5433), with their data under var/local (Postgres under /var/tmp when run as root, since the
#   postgres user must own it). deploy/local/down.sh stops them.
# - Missing Debian packages (redis-server, postgresql) are installed when running as root and
#   SIGNALBOX_INSTALL is not "no"; otherwise the script says what to install.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir="${SIGNALBOX_LOCAL_DIR:-$repo/var/local}"
env_file="$repo/var/local.env"
redis_port="${SIGNALBOX_REDIS_PORT:-6390}"
pg_port="${SIGNALBOX_PG_PORT:-5433}"
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1

say() { [ "$quiet" = 1 ] || echo "local: $*"; }
die() { echo "local: error: $*" >&2; exit 1; }

mkdir -p "$local_dir" "$(dirname "$env_file")"

apt_updated=0
need_package() { # need_package COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "/usr/lib/postgresql/15/bin/$1" ] && return 0
  if [ "$(id -u)" = 0 ] && [ "${SIGNALBOX_INSTALL:-yes}" != no ]; then
    say "installing Debian package $2"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
    apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  else
    die "$1 is missing: install the Debian package $2 (apt-get install $2), or set ${3:-the URL} to a server you run"
  fi
}

# ------------------------------------------------------------------ Redis
if [ -n "${REDIS_URL:-}" ]; then
  say "using the configured REDIS_URL (not started or changed by this script)"
  redis_url="$REDIS_URL"
else
  need_package redis-server redis-server REDIS_URL
  redis_url="redis://127.0.0.1:$redis_port"
  if redis-cli -p "$redis_port" -h 127.0.0.1 ping >/dev/null 2>&1; then
    say "redis already running on 127.0.0.1:$redis_port"
  else
    mkdir -p "$local_dir/redis"
    # noeviction: BullMQ's queues must never be evicted (design.md). appendonly: a restart keeps
    # what was acknowledged (the ingest's durability tests rely on it). The AOF is rewritten past
    # 1 GB rather than Redis's 64 MB: on this 2-core machine a rewrite's fork takes a core for
    # seconds, and the benchmarks' traffic set one off every few seconds (203 in a morning's runs).
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$local_dir/redis" \
      --daemonize yes --pidfile "$local_dir/redis/redis.pid" --logfile "$local_dir/redis/redis.log" \
      --maxmemory-policy noeviction --appendonly yes --appendfsync everysec --save "" \
      --auto-aof-rewrite-min-size 1gb >/dev/null
    for _ in $(seq 50); do redis-cli -p "$redis_port" -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$redis_port" -h 127.0.0.1 ping >/dev/null 2>&1 || die "redis did not start; see $local_dir/redis/redis.log"
    say "started redis on 127.0.0.1:$redis_port"
  fi
fi

# ------------------------------------------------------------------ Postgres
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && pg_bin="$d"; done
if [ -n "${DATABASE_URL:-}" ]; then
  say "using the configured DATABASE_URL (not started or changed by this script)"
  db_url="$DATABASE_URL"
else
  if [ -z "$pg_bin" ]; then
    need_package pg_ctl postgresql DATABASE_URL
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && pg_bin="$d"; done
    [ -n "$pg_bin" ] || die "postgresql installed but pg_ctl not found under /usr/lib/postgresql"
  fi
  db_url="postgres://signalbox:signalbox@127.0.0.1:$pg_port/signalbox"
  if [ "$(id -u)" = 0 ]; then
    # Postgres refuses to run as root: run it as the postgres user, in a folder it owns.
    id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --shell /bin/false postgres
    pg_dir="/var/tmp/signalbox-pg-$(printf '%s' "$repo" | md5sum | cut -c1-8)"
    as_pg() { runuser -u postgres -- "$@"; }
  else
    pg_dir="$local_dir/pg"
    as_pg() { "$@"; }
  fi
  if "$pg_bin/pg_isready" -h 127.0.0.1 -p "$pg_port" -q 2>/dev/null; then
    say "postgres already running on 127.0.0.1:$pg_port"
  else
    mkdir -p "$pg_dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$pg_dir" && chmod 700 "$pg_dir"
    if [ ! -f "$pg_dir/data/PG_VERSION" ]; then
      pwfile=$(mktemp)
      echo signalbox >"$pwfile"
      chmod 644 "$pwfile"
      as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U signalbox --pwfile="$pwfile" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
      rm -f "$pwfile"
    fi
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$pg_dir -c fsync=on" start >/dev/null \
      || die "postgres did not start; see $pg_dir/postgres.log"
    say "started postgres on 127.0.0.1:$pg_port (data in $pg_dir/data)"
  fi
  if ! PGPASSWORD=signalbox psql -h 127.0.0.1 -p "$pg_port" -U signalbox -d signalbox -tAc 'select 1' >/dev/null 2>&1; then
    PGPASSWORD=signalbox psql -h 127.0.0.1 -p "$pg_port" -U signalbox -d postgres -qc 'create database signalbox' >/dev/null
  fi
  echo "$pg_dir" >"$local_dir/pg.dir"
fi

cat >"$env_file" <<ENV
REDIS_URL=$redis_url
DATABASE_URL=$db_url
ENV
say "wrote $env_file"
