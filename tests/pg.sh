#!/usr/bin/env bash
# A throwaway PostgreSQL on 127.0.0.1 for the tests and benchmarks: no fsync, its data in a
# temporary directory. Installs Debian's server when it is missing (needs root, as tests/run has
# on a fresh machine). PostgreSQL refuses to run as root, so as root the server runs as the
# `postgres` system user. Its role signs in with a password (SCRAM, no trust), and the password
# is a canary (tests/integration/util.rs `CANARY`): the tests fail if any output shows it.
#   eval "$(bash tests/pg.sh start [PORT])"   # prints `export DATABASE_URL=...` and PGDATA_DIR
#   bash tests/pg.sh restart [PORT]           # starts a server stopped with `pg_ctl stop` again,
#                                             # on its data, with the options `start` gives it
#   bash tests/pg.sh stop [PORT]              # stops it and removes its data
set -euo pipefail
command=${1:?usage: pg.sh start|restart|stop [PORT]}
port=${2:-54329}
data=${PGDATA_DIR:-${TMPDIR:-/tmp}/rosterflow-pg-$port}
password=rf-canary-7d1e

bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

# Runs a server command as the user that owns the data directory.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}

# Starts the server on its (existing) data directory.
run_server() {
  as_owner "$1/pg_ctl -D $data -l $data/server.log -w -o '-h 127.0.0.1 -p $port -k $data \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200' start" >/dev/null
}

case $command in
  start)
    bin=$(bindir || true)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
      bin=$(bindir)
    fi
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home /nonexistent postgres
    fi
    if ! as_owner "$bin/pg_ctl -D $data status" >/dev/null 2>&1; then
      rm -rf "$data"
      mkdir -p "$data"
      [ "$(id -u)" = 0 ] && chown postgres "$data"
      pwfile=$(mktemp)
      echo "$password" >"$pwfile"
      [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
      as_owner "$bin/initdb -D $data -U postgres --auth=scram-sha-256 --pwfile=$pwfile -E UTF8 --no-sync" >/dev/null
      rm -f "$pwfile"
      run_server "$bin"
    fi
    echo "export DATABASE_URL=postgres://postgres:$password@127.0.0.1:$port/postgres"
    echo "export PGDATA_DIR=$data"
    ;;
  restart)
    bin=$(bindir)
    if [ ! -f "$data/PG_VERSION" ]; then
      echo "pg.sh restart: no server's data in $data: use start" >&2
      exit 1
    fi
    if ! as_owner "$bin/pg_ctl -D $data status" >/dev/null 2>&1; then
      run_server "$bin"
    fi
    ;;
  stop)
    bin=$(bindir || true)
    if [ -n "$bin" ] && [ -d "$data" ]; then
      as_owner "$bin/pg_ctl -D $data -m fast -w stop" >/dev/null 2>&1 || true
    fi
    rm -rf "$data"
    ;;
  *)
    echo "usage: pg.sh start|restart|stop [PORT]" >&2
    exit 2
    ;;
esac
