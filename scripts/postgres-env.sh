#!/usr/bin/env bash
# Bring up a throwaway PostgreSQL server for the tests that run against a real one:
#   - Debian's postgresql package (installed when initdb is missing)
#   - a cluster of its own in $MLCYCLE_PG_DATA (default /var/lib/mlcycle/postgres), owned
#     by the `postgres` user, trust authentication, listening on 127.0.0.1 only
#   - started in the background when nothing answers on the port (log: /tmp/mlcycle-postgres.log)
# Idempotent; runs as root with no stdin. The tests find it at
#   postgresql://postgres@127.0.0.1:$MLCYCLE_PG_PORT/postgres
# (MLCYCLE_TEST_POSTGRES_URL, which the Makefile sets) and make a database per test.
set -euo pipefail

PORT=${MLCYCLE_PG_PORT:-54329}
DATA=${MLCYCLE_PG_DATA:-/var/lib/mlcycle/postgres}
SOCKETS=/run/mlcycle/postgres
LOG=/tmp/mlcycle-postgres.log
export DEBIAN_FRONTEND=noninteractive

say() { printf 'postgres-env: %s\n' "$*"; }
die() { printf 'postgres-env: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs a package and starts a server as postgres)"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/initdb" ]; then
    say "installing postgresql"
    # One apt-get at a time: `make test` runs the set-up steps side by side.
    flock "${APT_LOCK:-/var/lock/mlcycle-apt.lock}" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"' apt-get postgresql </dev/null >/dev/null
fi
BIN=$(bindir)
[ -x "$BIN/initdb" ] || die "no initdb after installing postgresql"
as_postgres() { runuser -u postgres -- "$@"; }

if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres; then
    say "ready: a server answers on 127.0.0.1:$PORT"
    exit 0
fi

mkdir -p "$(dirname "$DATA")" "$SOCKETS"
chown postgres:postgres "$SOCKETS"
if [ ! -s "$DATA/PG_VERSION" ]; then
    say "creating a cluster in $DATA"
    mkdir -p "$DATA"
    chown postgres:postgres "$DATA"
    chmod 700 "$DATA"
    as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
        --no-instructions >/dev/null </dev/null
fi
# A server of ours that was killed leaves its pid file, and its backends may take a
# moment to exit and free the shared memory: pg_ctl then refuses once, so try again.
for attempt in 1 2 3 4 5; do
    if as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCKETS -c fsync=off -c max_connections=200" \
        </dev/null >/dev/null 2>&1; then
        break
    fi
    [ "$attempt" = 5 ] && { tail -20 "$LOG" >&2; die "the server did not start (log: $LOG)"; }
    say "the server did not start (attempt $attempt); trying again"
    sleep 2
done
"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres || die "the server does not answer on $PORT"
say "ready: PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"
