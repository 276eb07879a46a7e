#!/usr/bin/env bash
# Runs every benchmark (bench/README.md) but media.sh against the binaries in BUILD_DIR
# and prints a markdown results table. Takes about a minute on 2 cores, plus about
# 1.5 minutes for publish.sh (issue 5), which prints its own table after the main one,
# and about 4 minutes for farm.sh (the simulated farm), whose tables come last.
#
# usage: bench/run_all.sh BUILD_DIR
#   env: RESULTS=FILE keeps the raw key=value results there; the knobs of each
#        script (TASKS, SLOTS, DISPATCH_REPS, PROCESS_REPS, SCALE_FRAMES, ...) pass through.
#        PUBLISH=0 skips publish.sh (it also skips itself without oiiotool or python3-zmq).
#        FARM=0 skips farm.sh; its FARM_* knobs pass through too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-}
[[ -n "$build" && -d "$build" ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }

cmake --build "$build" --target farmhandd farmhand farmhand-worker farmhand_bench_client \
  farmhand_bench_worker farmhand_bench_zmq farmhand_bench_sqlite farmhand-media farmhand_python \
  farmhand_bench_media_ops farmhand_bench_farm >&2

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
  rm -f "${publish_out:-}"
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

# publish.sh prints its own table (report.py knows the issue-3 rows only): its key=value
# lines join the results, its table is printed after report.py's.
publish_out=
if [[ "${PUBLISH:-1}" = 0 ]]; then
  echo "== publish.sh skipped (PUBLISH=0)" >&2
elif ! command -v oiiotool >/dev/null || ! /usr/bin/python3 -c 'import zmq, google.protobuf' 2>/dev/null; then
  echo "== publish.sh skipped: it needs oiiotool and python3-zmq, python3-protobuf" >&2
else
  echo "== publish.sh" >&2
  publish_out=$(mktemp /tmp/fhb-publish.XXXXXX)
  "$here/publish.sh" "$build" >"$publish_out" &
  child=$!
  wait "$child" || failed+=(publish.sh)
  child=
  grep -E '^[a-z0-9_]+=' "$publish_out" >>"$results" || true
fi

# farm.sh (the simulated studio farm): its key=value lines join the results (its table
# sets its broker CPU per dispatch against dispatch.sh's), its tables come last.
if [[ "${FARM:-1}" = 0 ]]; then
  echo "== farm.sh skipped (FARM=0)" >&2
else
  echo "== farm.sh" >&2
  "$here/farm.sh" "$build" >>"$results" &
  child=$!
  wait "$child" || failed+=(farm.sh)
  child=
fi

/usr/bin/python3 "$here/report.py" "$results"
if [[ -n "$publish_out" ]]; then
  echo
  echo "Publish (issue 5, bench/publish.sh):"
  sed -n '/^$/,$p' "$publish_out"
fi
if [[ "${FARM:-1}" != 0 ]] && grep -q '^farm_workers=' "$results"; then
  echo
  echo "Farm scale (bench/farm.sh):"
  /usr/bin/python3 "$here/farm_report.py" "$results"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]} (their rows are missing or partial)" >&2
  exit 1
fi
