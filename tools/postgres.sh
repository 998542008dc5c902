#!/usr/bin/env bash
# A throw-away PostgreSQL for Airflow's metadata database: loopback only, data in a directory of
# your choice, trust authentication (nothing but this host's processes can reach it).
#
#   tools/postgres.sh start DIR [PORT]   # initdb + start; prints the SQLAlchemy URL on stdout
#   tools/postgres.sh stop DIR           # fast shutdown (the data stays in DIR; rm -rf it after)
#   tools/postgres.sh install            # Debian's postgresql, if initdb is missing (needs root)
#
# With KPO_ASYNC_PG_OWNER=PID, start also leaves a watchdog that stops the server once process PID
# is gone: a test run killed before its own cleanup leaves no PostgreSQL behind.
#
# As root the server runs as the `postgres` user (PostgreSQL refuses to run as root); otherwise
# as the calling user. DIR must not exist yet for start (or be an earlier stopped instance's DIR).
set -euo pipefail

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_pg() {
  bindir >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "postgres.sh: PostgreSQL is not installed. Fix: sudo apt-get install -y postgresql" >&2
    exit 1
  fi
  # Another process may hold the dpkg lock for a while: retry.
  for _ in $(seq 1 30); do
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1; then break; fi
    apt-get update -q >/dev/null 2>&1 || true
    sleep 10
  done
  bindir >/dev/null || { echo "postgres.sh: installing postgresql failed" >&2; exit 1; }
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd=${1:-}
case "$cmd" in
  install)
    install_pg
    ;;
  start)
    dir=${2:?usage: postgres.sh start DIR [PORT]}
    port=${3:-$(free_port)}
    install_pg
    bin=$(bindir)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$dir"
      # e.g. a mktemp -d ancestor (0700): postgres must be able to traverse down to DIR.
      up=$(dirname "$(realpath "$dir")")
      while [ "$up" != / ]; do
        [ -n "$(find "$up" -maxdepth 0 -perm -o+x)" ] || chmod o+x "$up"
        up=$(dirname "$up")
      done
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir" -U airflow --auth=trust -E UTF8 --no-locale >"$dir.initdb.log" 2>&1 \
        || { cat "$dir.initdb.log" >&2; exit 1; }
    fi
    # Loopback TCP only; the socket inside DIR (not /var/run, which another instance may own).
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null
    echo "$port" >"$dir/port"
    if [ -n "${KPO_ASYNC_PG_OWNER:-}" ]; then
      # Detached, its output nowhere: the caller may be reading this script's stdout to its end.
      setsid bash -c '
        while kill -0 "$1" 2>/dev/null && [ -f "$2/postmaster.pid" ]; do sleep 2; done
        [ -f "$2/postmaster.pid" ] && "$0" stop "$2"
      ' "$(realpath "$0")" "$KPO_ASYNC_PG_OWNER" "$dir" </dev/null >/dev/null 2>&1 &
    fi
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U airflow -d postgres -q \
      -c "SELECT 1 FROM pg_database WHERE datname='airflow'" -tA | grep -q 1 \
      || as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U airflow airflow
    echo "postgresql+psycopg2://airflow@127.0.0.1:$port/airflow"
    ;;
  stop)
    dir=${2:?usage: postgres.sh stop DIR}
    [ -f "$dir/postmaster.pid" ] || exit 0
    as_owner "$(bindir)/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
    ;;
  *)
    sed -n '2,11p' "$0" >&2
    exit 2
    ;;
esac
