#!/usr/bin/env bash
# Runs every benchmark (bench/README.md) against the binaries in BUILD_DIR and
# prints a markdown results table. Takes about a minute on 2 cores.
#
# usage: bench/run_all.sh BUILD_DIR
#   env: RESULTS=FILE keeps the raw key=value results there; the knobs of each
#        script (TASKS, SLOTS, DISPATCH_REPS, PROCESS_REPS, SCALE_FRAMES, ...) pass through.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-}
[[ -n "$build" && -d "$build" ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }

cmake --build "$build" --target farmhandd farmhand farmhand-worker farmhand_bench_client \
  farmhand_bench_worker farmhand_bench_zmq farmhand_bench_sqlite >&2

results=${RESULTS:-$(mktemp /tmp/fhb-results.XXXXXX)}
: >"$results"
child=
cleanup() {
  # Each benchmark script stops its own processes on exit; make sure it gets the chance.
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  [[ -n "${RESULTS:-}" ]] || rm -f "$results"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "machine_date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine_nproc=$(nproc)"
  echo "machine_cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "machine_kernel=Linux $(uname -r)"
  echo "machine_loadavg=$load"
} >>"$results"
if awk -v l="${load%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  echo "warning: load average $load before the run: other work competes for the CPUs" >&2
fi

started=$(date +%s)
failed=()
for bench in dispatch.sh process_tasks.sh scale.sh; do
  echo "== $bench" >&2
  "$here/$bench" "$build" >>"$results" &
  child=$!
  wait "$child" || failed+=("$bench")
  child=
done
echo "machine_run_s=$(($(date +%s) - started))" >>"$results"

/usr/bin/python3 "$here/report.py" "$results"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]} (their rows are missing or partial)" >&2
  exit 1
fi
