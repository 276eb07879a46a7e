#!/usr/bin/env bash
# Task isolation cost: a `command` job of FRAMES frames at chunk 1 running
# /bin/true on ONE standalone worker with one slot, timed from submit to
# succeeded, with each task in a cgroup v2 of its own (the default where the
# host allows it) and, in turn, as a process group only (--no-cgroups). Rounds
# alternate A B A B, so a drift in the machine's speed hits both.
#
# usage: bench/task_isolation.sh BUILD_DIR     (env: ISOLATION_FRAMES, ISOLATION_REPS)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

FRAMES=${ISOLATION_FRAMES:-200}
REPS=${ISOLATION_REPS:-5}
# A plain worker endpoint: the standalone workers here get no key.
WORKER_CURVE=false write_config "$BENCH_WORK/isolation.yaml" 1

# run_round MODE [WORKER_FLAGS...]: one job on a fresh broker and worker; prints
# "wall_s worker_cpu_us_per_task isolation".
run_round() {
  local mode=$1
  shift
  local state=$BENCH_WORK/$mode-state out=$BENCH_WORK/$mode.out
  start_broker "$BENCH_WORK/isolation.yaml" "$state" 0
  start_bg "$BENCH_WORK/$mode-worker.log" "$BIN/farmhand-worker" --broker "$WORKER_EP" \
    --name "bench-$mode" --slots 1 --interactive-slots 0 --work-dir "$BENCH_WORK/$mode-work" \
    --log-level info "$@"
  local worker=$BG_PID
  "$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" --timeout-s 30 wait-workers \
    --count 1 >/dev/null || die "worker did not join"
  local cpu0
  cpu0=$(cpu_ms "$worker")
  "$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" submit --kind command \
    --template true --frames "1-$FRAMES" --chunk 1 --wait --poll-ms 5 >"$out" ||
    die "command job failed"
  local cpu_us
  cpu_us=$(calc "($(cpu_ms "$worker") - $cpu0) * 1000 / $FRAMES")
  local isolation
  isolation=$(grep -h "task isolation worker=bench-$mode " "$BENCH_WORK/stderr.log" |
    tail -n 1 | grep -o 'isolation="[^"]*"' | cut -d'"' -f2)
  stop_pid "$worker"
  stop_broker
  rm -rf "$state" "$BENCH_WORK/$mode-work"
  echo "$(calc "$(val "$out" done_ms) / 1000") $cpu_us ${isolation:-unknown}"
}

cg_all=() pg_all=() cg_cpu=() pg_cpu=() ratios=()
for rep in $(seq "$REPS"); do
  read -r cg_s cg_us cg_iso < <(run_round cgroup)
  read -r pg_s pg_us pg_iso < <(run_round pgroup --no-cgroups)
  cg_all+=("$cg_s") pg_all+=("$pg_s") cg_cpu+=("$cg_us") pg_cpu+=("$pg_us")
  ratios+=("$(calc "$cg_s / $pg_s")")
  log "isolation rep $rep/$REPS: cgroup $cg_s s (worker CPU $cg_us us/task; $cg_iso)," \
    "process group $pg_s s (worker CPU $pg_us us/task; $pg_iso)"
done

cg=$(median "${cg_all[@]}")
pg=$(median "${pg_all[@]}")
echo "isolation_frames=$FRAMES"
echo "isolation_reps=$REPS"
echo "isolation_cgroup=$cg_iso"
echo "isolation_cgroup_s=$cg"
echo "isolation_cgroup_all=${cg_all[*]}"
echo "isolation_pgroup_s=$pg"
echo "isolation_pgroup_all=${pg_all[*]}"
echo "isolation_ratio=$(median "${ratios[@]}")"
echo "isolation_cgroup_ms_per_task=$(calc "$cg * 1000 / $FRAMES")"
echo "isolation_pgroup_ms_per_task=$(calc "$pg * 1000 / $FRAMES")"
echo "isolation_cgroup_worker_cpu_us_per_task=$(median "${cg_cpu[@]}")"
echo "isolation_pgroup_worker_cpu_us_per_task=$(median "${pg_cpu[@]}")"
