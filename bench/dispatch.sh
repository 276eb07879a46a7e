#!/usr/bin/env bash
# Dispatch: noop tasks through farmhandd and 2 local workers, side by side with
# the transport ceiling (bare ROUTER/DEALER) and the durable-state ceiling (the
# store's SQLite writes alone), then task latency at 10% of the measured rate.
#
# usage: bench/dispatch.sh BUILD_DIR     (env: TASKS, SLOTS, DISPATCH_REPS, LATENCY_S)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

TASKS=${TASKS:-100000}
SLOTS=${SLOTS:-16}
REPS=${DISPATCH_REPS:-7}
LATENCY_S=${LATENCY_S:-3}
WORKERS=2

write_config "$BENCH_WORK/dispatch.yaml" "$SLOTS"

# Commits per run: SQLite (WAL, synchronous=FULL) calls fdatasync once per commit,
# plus two per WAL checkpoint. Counted with perf when it may trace syscalls.
have_perf=0
if command -v perf >/dev/null &&
  perf stat -e syscalls:sys_enter_fdatasync -o /dev/null true >/dev/null 2>&1; then
  have_perf=1
fi

fh_rates=() zmq_rates=() sql_rates=() batches=() broker_us=() workers_us=()
for rep in $(seq "$REPS"); do
  state=$BENCH_WORK/dispatch-$rep
  start_broker "$BENCH_WORK/dispatch.yaml" "$state" "$WORKERS"
  if [[ $have_perf = 1 ]]; then
    perf stat -x, -e syscalls:sys_enter_fdatasync -p "$BROKER_PID" \
      -o "$BENCH_WORK/perf-$rep.csv" 2>/dev/null &
    perf_pid=$!
    BENCH_PIDS+=("$perf_pid")
    sleep 0.3
  fi
  out=$BENCH_WORK/dispatch-$rep.out
  mapfile -t workers < <(pgrep -P "$BROKER_PID")
  broker_cpu0=$(cpu_ms "$BROKER_PID")
  workers_cpu0=$(cpu_ms "${workers[@]}")
  "$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" submit --kind noop \
    --tasks "$TASKS" --wait --poll-ms 20 >"$out" || die "dispatch job failed"
  broker_us+=("$(calc "($(cpu_ms "$BROKER_PID") - $broker_cpu0) * 1000 / $TASKS")")
  workers_us+=("$(calc "($(cpu_ms "${workers[@]}") - $workers_cpu0) * 1000 / $TASKS")")
  fh=$(calc "$TASKS / ($(val "$out" done_ms) / 1000)")
  batch=$((WORKERS * SLOTS))
  batch_src=in-flight
  if [[ $have_perf = 1 ]]; then
    stop_pid "$perf_pid" INT
    syncs=$(grep fdatasync "$BENCH_WORK/perf-$rep.csv" | cut -d, -f1)
    if [[ "$syncs" =~ ^[0-9]+$ && "$syncs" -gt 0 ]]; then
      batch=$(( (TASKS + syncs / 2) / syncs ))
      batch_src=measured
    fi
  fi
  stop_broker
  rm -rf "$state"

  zmq_out=$BENCH_WORK/zmq-$rep.out
  "$BENCH_BIN/farmhand_bench_zmq" --endpoint "ipc://$BENCH_WORK/ceiling.sock" --tasks "$TASKS" \
    --dealers "$WORKERS" --slots "$SLOTS" >"$zmq_out"
  sql_out=$BENCH_WORK/sqlite-$rep.out
  "$BENCH_BIN/farmhand_bench_sqlite" --db "$BENCH_WORK/ceiling-$rep.db" --tasks "$TASKS" \
    --batch "$batch" >"$sql_out"
  rm -f "$BENCH_WORK/ceiling-$rep.db"*

  fh_rates+=("$fh")
  zmq_rates+=("$(val "$zmq_out" tasks_per_s)")
  sql_rates+=("$(val "$sql_out" tasks_per_s)")
  batches+=("$batch")
  log "dispatch rep $rep/$REPS: farmhand $fh tasks/s, zmq $(val "$zmq_out" tasks_per_s)," \
    "sqlite $(val "$sql_out" tasks_per_s) (batch $batch, $batch_src)"
done

fh=$(median "${fh_rates[@]}")
zmq=$(median "${zmq_rates[@]}")
sql=$(median "${sql_rates[@]}")
lower=$(calc "($zmq < $sql) ? $zmq : $sql")
echo "dispatch_tasks=$TASKS"
echo "dispatch_workers=$WORKERS"
echo "dispatch_slots=$SLOTS"
echo "dispatch_reps=$REPS"
echo "dispatch_batch=$(median "${batches[@]}")"
echo "dispatch_batch_source=$batch_src"
echo "dispatch_farmhand_per_s=$fh"
echo "dispatch_farmhand_all=${fh_rates[*]}"
echo "dispatch_zmq_per_s=$zmq"
echo "dispatch_zmq_all=${zmq_rates[*]}"
echo "dispatch_sqlite_per_s=$sql"
echo "dispatch_sqlite_all=${sql_rates[*]}"
echo "dispatch_ratio=$(calc "$fh / $lower")"
echo "dispatch_broker_cpu_us_per_task=$(median "${broker_us[@]}")"
echo "dispatch_workers_cpu_us_per_task=$(median "${workers_us[@]}")"

# Latency at 10% load: the fake worker is the only worker (as many slots as the two
# local workers had) and its own client submits one-task jobs at a tenth of the rate.
rate=$(calc "int($fh / 10)")
admit_fake_worker "$BENCH_WORK/latency"
start_broker "$BENCH_WORK/dispatch.yaml" "$BENCH_WORK/latency" 0
lat=$BENCH_WORK/latency.out
"$BENCH_BIN/farmhand_bench_worker" latency --worker-endpoint "$WORKER_EP" --broker "$CLIENT_EP" \
  "${FAKE_WORKER_CURVE[@]}" \
  --slots $((WORKERS * SLOTS)) --rate "$rate" --duration-s "$LATENCY_S" --warmup-s 0.3 >"$lat" ||
  die "latency run incomplete: $(tr '\n' ' ' <"$lat")"
stop_broker
log "latency at $rate jobs/s: submit->assign p50 $(val "$lat" submit_to_assign_p50_ms) ms," \
  "p99 $(val "$lat" submit_to_assign_p99_ms) ms"
echo "latency_rate_per_s=$rate"
echo "latency_samples=$(val "$lat" submit_to_assign_count | cut -d. -f1)"
echo "latency_p50_ms=$(val "$lat" submit_to_assign_p50_ms)"
echo "latency_p99_ms=$(val "$lat" submit_to_assign_p99_ms)"
echo "latency_max_ms=$(val "$lat" submit_to_assign_max_ms)"
echo "latency_reply_p50_ms=$(val "$lat" reply_to_assign_p50_ms)"
echo "latency_reply_p99_ms=$(val "$lat" reply_to_assign_p99_ms)"
echo "latency_assign_before_reply=$(val "$lat" assign_before_reply_fraction)"
