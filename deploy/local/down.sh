#!/usr/bin/env bash
# Stops the project-local Redis and Postgres that deploy/local/up.sh started (never any other).
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
local_dir="${SIGNALBOX_LOCAL_DIR:-$repo/var/local}"
if [ -f "$local_dir/redis/redis.pid" ]; then
  kill "$(cat "$local_dir/redis/redis.pid")" 2>/dev/null && echo "local: stopped redis"
  rm -f "$local_dir/redis/redis.pid"
fi
if [ -f "$local_dir/pg.dir" ]; then
  pg_dir=$(cat "$local_dir/pg.dir")
  for d in /usr/lib/postgresql/*/bin; do pg_bin="$d"; done
  if [ -f "$pg_dir/data/postmaster.pid" ]; then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null
    else "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null; fi
    echo "local: stopped postgres"
  fi
fi
