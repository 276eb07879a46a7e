#!/usr/bin/env bash
# Scale and recovery.
#
# Scale: a command job of frames 1-1000000 at chunk 1 (a million tasks) and at
# chunk 10, timed until the submit is acknowledged, side by side with the sqlite3
# shell inserting the same number of task rows (the broker's schema, WAL,
# synchronous=FULL, one transaction). The chunk-1 submit is sent by a fake worker
# (farmhand_bench_worker probe) that meanwhile cycles through a background noop
# job and times status round trips, so it also measures how long the broker stops
# answering, and reads farmhandd's RSS before and after.
#
# Recovery: with those jobs queued, kill -9 the broker, start it again on the same
# state dir, and time until `farmhand ls` answers.
#
# usage: bench/scale.sh BUILD_DIR     (env: SCALE_FRAMES, BACKGROUND_TASKS)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

FRAMES=${SCALE_FRAMES:-1000000}
BACKGROUND_TASKS=${BACKGROUND_TASKS:-500000}
CLI=$BIN/farmhand
STATE=$BENCH_WORK/scale
write_config "$BENCH_WORK/scale.yaml" 1

# ---------------------------------------------------------------- the sqlite3 peer

# sqlite_rows ROWS: seconds for the sqlite3 shell to insert ROWS task rows.
sqlite_rows() {
  local db=$BENCH_WORK/peer-$1.db
  { echo "PRAGMA journal_mode=WAL;"; cat "$SRC/daemon/store/migrations/0001_init.sql"; } |
    sqlite3 "$db" >/dev/null
  local t0
  t0=$(now_ns)
  sqlite3 "$db" <<EOF
PRAGMA synchronous=FULL;
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<$1)
INSERT INTO tasks SELECT 1, x, 1, 0, 0, '', '' FROM c;
COMMIT;
EOF
  calc "($(now_ns) - $t0) / 1e6"
  [[ "$(sqlite3 "$db" 'SELECT count(*) FROM tasks')" = "$1" ]] || die "sqlite3 peer lost rows"
  rm -f "$db"*
}

# cli_submit CHUNK: milliseconds for `farmhand submit` (process start included).
cli_submit() {
  local t0
  t0=$(now_ns)
  "$CLI" submit command true --frames "1-$FRAMES" --chunk "$1" >/dev/null || die "cli submit failed"
  calc "($(now_ns) - $t0) / 1e6"
}

sqlite_1=$(sqlite_rows "$FRAMES")
sqlite_10=$(sqlite_rows "$((FRAMES / 10))")
log "sqlite3: $FRAMES rows in $sqlite_1 ms, $((FRAMES / 10)) rows in $sqlite_10 ms"

# ---------------------------------------------------------------- farmhand

admit_fake_worker "$STATE"
start_broker "$BENCH_WORK/scale.yaml" "$STATE" 0 --log-level info
"$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" submit --kind noop \
  --tasks "$BACKGROUND_TASKS" >/dev/null || die "background job refused"
probe=$BENCH_WORK/probe.out
"$BENCH_BIN/farmhand_bench_worker" probe --worker-endpoint "$WORKER_EP" --broker "$CLIENT_EP" \
  "${FAKE_WORKER_CURVE[@]}" --slots 1 --status-job 1 --status-interval-ms 2 --warmup-s 1 --tail-s 1 --duration-s 60 \
  --submit-frames "1-$FRAMES" --submit-chunk 1 --broker-pid "$BROKER_PID" >"$probe" ||
  die "probe failed: $(tr '\n' ' ' <"$probe")"
[[ "$(val "$probe" submit_task_count)" = "$FRAMES" ]] || die "chunk-1 job has the wrong task count"
fh_1=$(val "$probe" submit_ms)
rss_before=$(val "$probe" rss_before_bytes)
rss_after=$(val "$probe" rss_after_bytes)
per_task=$(calc "($rss_after - $rss_before) / $FRAMES")
log "chunk 1: acknowledged in $fh_1 ms; rss $rss_before -> $rss_after ($per_task B/task)"

cli_1=$(cli_submit 1)
c10=$BENCH_WORK/chunk10.out
"$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" submit --kind command --template true \
  --frames "1-$FRAMES" --chunk 10 >"$c10" || die "chunk-10 submit failed"
fh_10=$(val "$c10" submit_ms)
cli_10=$(cli_submit 10)
t0=$(now_ns)
"$CLI" ls >/dev/null
cli_ls=$(calc "($(now_ns) - $t0) / 1e6")
rss_end=$(awk '/VmRSS/ { print $2 * 1024 }' "/proc/$BROKER_PID/status")
log "chunk 1 by CLI $cli_1 ms; chunk 10: $fh_10 ms (CLI $cli_10 ms); CLI ls $cli_ls ms"

echo "scale_frames=$FRAMES"
echo "scale_chunk1_ms=$fh_1"
echo "scale_chunk1_cli_ms=$cli_1"
echo "scale_chunk1_sqlite3_ms=$sqlite_1"
echo "scale_chunk1_ratio=$(calc "$fh_1 / $sqlite_1")"
echo "scale_chunk10_ms=$fh_10"
echo "scale_chunk10_cli_ms=$cli_10"
echo "scale_chunk10_sqlite3_ms=$sqlite_10"
echo "scale_chunk10_ratio=$(calc "$fh_10 / $sqlite_10")"
echo "scale_cli_ls_ms=$cli_ls"
echo "scale_rss_before_bytes=$rss_before"
echo "scale_rss_after_bytes=$rss_after"
echo "scale_rss_end_bytes=$rss_end"
echo "scale_bytes_per_task=$per_task"
for k in turnaround turnaround_window status status_window; do
  for s in count p50_ms p99_ms max_ms; do
    echo "scale_${k}_$s=$(val "$probe" "${k}_$s")"
  done
done

# ---------------------------------------------------------------- recovery

# job count and total tasks, as `farmhand ls --json` reports them
jobs_summary() {
  "$CLI" ls --json | /usr/bin/python3 -c \
    'import json, sys; j = json.load(sys.stdin); print(len(j), sum(x["task_count"] for x in j))'
}

before=$(jobs_summary)

# restart_broker: kill -9 the broker, start it again on the same state; sets T0.
restart_broker() {
  { kill -KILL "$BROKER_PID" && wait "$BROKER_PID"; } 2>/dev/null || true
  T0=$(now_ns)
  launch_broker "$BENCH_WORK/scale.yaml" "$STATE" 0 --log-level info
}

# As a user would: `farmhand ls` (default reply timeout) run right after the restart.
# Its socket retries the connection every 100 ms (libzmq's default), which bounds
# how soon it can see the new broker.
restart_broker
"$CLI" ls >/dev/null || die "farmhand ls failed after the restart"
recovery_ms=$(calc "($(now_ns) - $T0) / 1e6")
restore_ms=$(grep -o 'restore_ms=[0-9]*' "$BROKER_LOG" | tail -n 1 | cut -d= -f2)
after=$(jobs_summary)
[[ "$before" = "$after" ]] || die "jobs lost in recovery: before '$before', after '$after'"
log "recovery: farmhand ls answered ${recovery_ms} ms after restart (restore_ms=$restore_ms)," \
  "jobs and tasks: $after"

# Once more, timed by a client that retries its connection every 10 ms and asks
# every 20 ms: when the broker itself is ready.
restart_broker
"$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" --timeout-s 60 wait-ready >/dev/null ||
  die "broker did not answer after the second restart"
ready_ms=$(calc "($(now_ns) - $T0) / 1e6")
restore2_ms=$(grep -o 'restore_ms=[0-9]*' "$BROKER_LOG" | tail -n 1 | cut -d= -f2)
log "recovery: broker answered ${ready_ms} ms after restart (restore_ms=$restore2_ms)"
stop_broker

echo "recovery_jobs=${after% *}"
echo "recovery_tasks=${after#* }"
echo "recovery_cli_ms=$recovery_ms"
echo "recovery_restore_ms=$restore_ms"
echo "recovery_ready_ms=$ready_ms"
echo "recovery_restore2_ms=$restore2_ms"
