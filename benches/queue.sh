#!/usr/bin/env bash
# benches/queue.sh - the job queue's own speed with trivial jobs, SQLite
# and PostgreSQL side by side in one run: jobs a second through claim and
# finish with 1, 2 and 4 workers (each its own connection, as separate
# daemons), and how long after a dead worker's lease ends another has its
# job. PostgreSQL is a throwaway server (Debian's postgresql package,
# initdb and pg_ctl in a temporary folder, a free port on 127.0.0.1,
# fsync on as in production), stopped at the end.
#
#   bash benches/queue.sh [JOBS]     (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-2000}
T=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p studiocast --example queue_throughput
EX=$T/release/examples/queue_throughput

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DIR=$(mktemp -d)
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ $(id -u) -eq 0 ]] && chown postgres: "$DIR"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$DIR/data" -A trust -U studiocast -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null; rm -rf "$DIR"' EXIT
URL="postgres://studiocast@127.0.0.1:$PORT/postgres"

printf '%-9s %7s %12s %10s %16s\n' store workers inserts/s jobs/s takeover_ms
for W in 1 2 4; do
  for STORE in sqlite postgres; do
    if [[ $STORE == postgres ]]; then
      PGOPTIONS='-c client_min_messages=warning' as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PORT" -U studiocast -d postgres \
        -c 'DROP TABLE IF EXISTS jobs, webhook_deliveries' >/dev/null
      OUT=$("$EX" "$JOBS" "$W" "$URL")
    else
      OUT=$("$EX" "$JOBS" "$W")
    fi
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%-9s %7d %12.0f %10.0f %16.1f" % (r["store"], r["workers"], r["inserts_per_s"], r["jobs_per_s"], r["takeover_after_lease_ms"]))' "$OUT"
  done
done
