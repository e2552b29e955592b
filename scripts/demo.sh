#!/usr/bin/env bash
# make demo: the main job end to end on the filesystem repository, in a
# throwaway PostgreSQL 15 cluster that is removed afterwards.
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

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 54329)
PGDATA="$WORK/pgdata"
REPO="$WORK/repo"
CFG="$WORK/walrus.yaml"
BIN="$WORK/walrus"
cp bin/walrus "$BIN"; chmod 755 "$BIN"

cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${RESTORED:-}" ] && as_pg "$PGBIN/pg_ctl" -D "$RESTORED" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. a throwaway cluster in $PGDATA (initdb --data-checksums)"
as_pg "$PGBIN/initdb" -D "$PGDATA" --data-checksums -U postgres --auth=trust >/dev/null
cat > "$CFG" <<YAML
repo: file://$REPO
compression: lz4
YAML
[ "$(id -u)" = 0 ] && chown postgres: "$CFG"
cat >> "$PGDATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
wal_level = replica
archive_mode = on
archive_command = '$BIN --config $CFG wal-push %p'
CONF
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w start >/dev/null
PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)

step "2. some writes (pgbench -i -s 2), then switch WAL so segments get archived"
as_pg "$PGBIN/pgbench" -q -i -s 2 -h 127.0.0.1 -p "$PORT" -U postgres postgres >/dev/null 2>&1
as_pg "${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
for _ in $(seq 1 100); do
  n=$(as_pg "${PSQL[@]}" -Atc "SELECT archived_count FROM pg_stat_archiver")
  f=$(as_pg "${PSQL[@]}" -Atc "SELECT failed_count FROM pg_stat_archiver")
  [ "$f" != 0 ] && { echo "archiving failed:"; tail -20 "$WORK/server.log"; exit 1; }
  last=$(as_pg "${PSQL[@]}" -Atc "SELECT pg_walfile_name(pg_current_wal_lsn())")
  done_=$(as_pg "${PSQL[@]}" -Atc "SELECT coalesce(last_archived_wal,'') >= pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver")
  [ "$done_" = t ] && break
  sleep 0.2
done
as_pg "${PSQL[@]}" -c "SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver"

step "3. what walrus archived in $REPO"
find "$REPO" -type f ! -name '.*' -printf '%P\t%s bytes\n' | sort

step "4. fetch one segment back through restore_command's path and compare"
SEG=$(cd "$PGDATA/pg_wal" && ls | grep -E '^[0-9A-F]{24}$' | sort | head -1)
as_pg "$BIN" --config "$CFG" wal-fetch "$SEG" "$WORK/fetched"
cmp "$PGDATA/pg_wal/$SEG" "$WORK/fetched" && echo "$SEG: fetched back byte-identical"

step "5. a file that is not archived: exit status 1 (PostgreSQL's normal end of WAL)"
set +e; as_pg "$BIN" --config "$CFG" wal-fetch 0000000100000000000000FF "$WORK/missing" 2>/dev/null; rc=$?; set -e
echo "wal-fetch of a missing segment exited $rc"

echo; echo "demo: done (everything in $WORK is removed on exit)"
