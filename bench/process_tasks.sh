#!/usr/bin/env bash
# Process tasks vs the shell: a `command` job of FRAMES frames at chunk 1 running
# /bin/true on 2 local workers with 1 slot each, timed from submit to succeeded,
# side by side with `seq FRAMES | xargs -P 2 -n1 /bin/true` (the same 2-way
# parallelism, no scheduler, no state, no logs).
#
# usage: bench/process_tasks.sh BUILD_DIR     (env: PROCESS_FRAMES, PROCESS_REPS)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

FRAMES=${PROCESS_FRAMES:-2000}
REPS=${PROCESS_REPS:-3}
write_config "$BENCH_WORK/process.yaml" 1

fh_all=() xargs_all=() fh_cpu=() xargs_cpu=()
for rep in $(seq "$REPS"); do
  start_broker "$BENCH_WORK/process.yaml" "$BENCH_WORK/process-$rep" 2
  out=$BENCH_WORK/process-$rep.out
  broker_family
  cpu0=$(cpu_ms "${FAMILY[@]}")
  "$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" submit --kind command \
    --template true --frames "1-$FRAMES" --chunk 1 --wait --poll-ms 5 >"$out" ||
    die "command job failed"
  # CPU of farmhandd and its workers themselves, not of the /bin/true they run.
  fh_cpu_ms=$(calc "($(cpu_ms "${FAMILY[@]}") - $cpu0) * 1000 / $FRAMES")
  stop_broker
  rm -rf "$BENCH_WORK/process-$rep"
  fh_s=$(calc "$(val "$out" done_ms) / 1000")

  TIMEFORMAT='%R %U %S'
  times=$( { time (seq "$FRAMES" | xargs -P 2 -n1 /bin/true); } 2>&1)
  xargs_s=$(echo "$times" | awk '{ print $1 }')
  xargs_cpu_ms=$(echo "$times" | awk -v n="$FRAMES" '{ printf "%.1f", ($2 + $3) * 1e6 / n }')

  fh_all+=("$fh_s")
  xargs_all+=("$xargs_s")
  fh_cpu+=("$fh_cpu_ms")
  xargs_cpu+=("$xargs_cpu_ms")
  log "process rep $rep/$REPS: farmhand $fh_s s (its own CPU $fh_cpu_ms us/task)," \
    "xargs $xargs_s s (CPU incl. /bin/true $xargs_cpu_ms us/task)"
done

fh=$(median "${fh_all[@]}")
xa=$(median "${xargs_all[@]}")
echo "process_frames=$FRAMES"
echo "process_reps=$REPS"
echo "process_farmhand_s=$fh"
echo "process_farmhand_all=${fh_all[*]}"
echo "process_xargs_s=$xa"
echo "process_xargs_all=${xargs_all[*]}"
echo "process_ratio=$(calc "$fh / $xa")"
echo "process_farmhand_cpu_us_per_task=$(median "${fh_cpu[@]}")"
echo "process_xargs_cpu_us_per_task=$(median "${xargs_cpu[@]}")"
