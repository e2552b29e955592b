#!/usr/bin/env bash
# make demo: the main job end to end on the filesystem repository, in a
# throwaway PostgreSQL 15 cluster that is removed afterwards:
# setup → archive → backup → writes → restore point → writes → delta backup
# → restore the latest state and compare → restore to the restore point →
# list, verify.
set -euo pipefail
cd "$(dirname "$0")/.."

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$PGBIN/postgres" ] || { echo "demo: PostgreSQL 15 not found in $PGBIN (install postgresql-15, or run .ci/run)"; exit 1; }

WORK=$(mktemp -d /tmp/walrus-demo.XXXXXX)
chmod 755 "$WORK"
RUNAS=()
if [ "$(id -u)" = 0 ]; then
  RUNAS=(runuser -u postgres --)
  chown postgres: "$WORK"
fi
as_pg() { "${RUNAS[@]}" "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
PGDATA="$WORK/pgdata"
REPO="$WORK/repo"
CFG="$WORK/walrus.yaml"
BIN="$WORK/walrus"
cp bin/walrus "$BIN"; chmod 755 "$BIN"
W=(as_pg "$BIN" --config "$CFG")

RESTORED=""
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
  for d in "$WORK"/restored-*; do
    [ -d "$d" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
psql_on() { local port=$1; shift; as_pg "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
digest() { psql_on "$1" -Atc "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $2 t"; }

step "1. a throwaway cluster (initdb --data-checksums), configured by walrus setup"
as_pg "$PGBIN/initdb" -D "$PGDATA" --data-checksums -U postgres --auth=trust >/dev/null
cat >> "$PGDATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
CONF
as_pg "$BIN" --config "$CFG" setup --pgdata "$PGDATA" --repo "file://$REPO" --compression lz4
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w start >/dev/null
export WALRUS_POSTGRES_DSN="postgres://postgres@127.0.0.1:$PORT/postgres"
W=(as_pg env WALRUS_POSTGRES_DSN="$WALRUS_POSTGRES_DSN" "$BIN" --config "$CFG")
"${W[@]}" check

step "2. data: pgbench -i -s 5, then a full backup"
as_pg "$PGBIN/pgbench" -q -i -s 5 -h 127.0.0.1 -p "$PORT" -U postgres postgres >/dev/null 2>&1
FULL=$("${W[@]}" backup-push "$PGDATA")
echo "full backup: $FULL"

step "3. more writes, a named restore point, more writes, then a delta backup"
as_pg "$PGBIN/pgbench" -n -t 500 -h 127.0.0.1 -p "$PORT" -U postgres postgres >/dev/null 2>&1
psql_on "$PORT" -c "CREATE TABLE demo_marks(phase text, at timestamptz default now()); INSERT INTO demo_marks VALUES ('before restore point')"
AT_RP=$(digest "$PORT" pgbench_accounts)
RP_LSN=$("${W[@]}" create-restore-point demo-point)
echo "restore point demo-point at $RP_LSN"
as_pg "$PGBIN/pgbench" -n -t 500 -h 127.0.0.1 -p "$PORT" -U postgres postgres >/dev/null 2>&1
psql_on "$PORT" -c "INSERT INTO demo_marks VALUES ('after restore point')"
DELTA=$("${W[@]}" backup-push "$PGDATA")
echo "delta backup: $DELTA"
psql_on "$PORT" -c "INSERT INTO demo_marks VALUES ('after the delta backup')"
LATEST_ACCOUNTS=$(digest "$PORT" pgbench_accounts)
LATEST_MARKS=$(digest "$PORT" demo_marks)
psql_on "$PORT" -Atc "SELECT pg_switch_wal()" >/dev/null
sleep 2

step "4. backup-list"
"${W[@]}" backup-list

step "5. restore the latest state into a new directory, start it, compare"
R1="$WORK/restored-latest"
"${W[@]}" backup-fetch "$R1" LATEST
P1=$(free_port)
as_pg "$PGBIN/pg_ctl" -D "$R1" -l "$WORK/restored-latest.log" -o "-p $P1 -k $WORK -c archive_mode=off" -w start >/dev/null
until [ "$(psql_on "$P1" -Atc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.3; done
[ "$(digest "$P1" pgbench_accounts)" = "$LATEST_ACCOUNTS" ] && [ "$(digest "$P1" demo_marks)" = "$LATEST_MARKS" ] \
  && echo "restored cluster equals the source (pgbench_accounts and demo_marks digests match)" \
  || { echo "MISMATCH after restoring the latest state"; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$R1" -m fast -w stop >/dev/null

step "6. restore to the restore point: rows written after it are absent"
R2="$WORK/restored-point"
"${W[@]}" backup-fetch "$R2" --restore-point demo-point
P2=$(free_port)
as_pg "$PGBIN/pg_ctl" -D "$R2" -l "$WORK/restored-point.log" -o "-p $P2 -k $WORK -c archive_mode=off" -w start >/dev/null
until [ "$(psql_on "$P2" -Atc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.3; done
psql_on "$P2" -c "SELECT phase FROM demo_marks ORDER BY at"
[ "$(psql_on "$P2" -Atc "SELECT count(*) FROM demo_marks WHERE phase <> 'before restore point'")" = 0 ] \
  && [ "$(digest "$P2" pgbench_accounts)" = "$AT_RP" ] \
  && echo "restored to demo-point: later rows are absent, pgbench_accounts equals its state at the point" \
  || { echo "MISMATCH after restoring to the restore point"; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$R2" -m fast -w stop >/dev/null

step "7. verification: wal-verify$(if "$BIN" backup-verify --help >/dev/null 2>&1; then echo ' and backup-verify'; fi)"
"${W[@]}" wal-verify
if "$BIN" backup-verify --help >/dev/null 2>&1; then "${W[@]}" backup-verify --all; fi

echo; echo "demo: done (everything in $WORK is removed on exit)"
