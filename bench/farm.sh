#!/usr/bin/env bash
# Farm scale: a simulated studio farm (farmhand_bench_farm, one process playing
# FARM_WORKERS workers of FARM_SLOTS slots over real sockets) against a real farmhandd
# with FARM_JOBS queued noop jobs across FARM_PROJECTS projects. Per run: the time
# from an empty farm to every slot busy, sustained tasks/s, status p99 under that
# load, broker CPU per dispatch and broker memory. Two configurations side by side,
# interleaved, FARM_REPS times:
#   plain     no limits, every worker and job in the default pool, one priority;
#   controls  3 limits whose capacities bind (FARM_LIMIT_PERMILLE of all slots) carried
#             by FARM_LIMITED_PERCENT of the jobs, 3 pools (workers split evenly, a
#             quarter of the jobs in each pool and a quarter in none), max running 2 on
#             FARM_MAX_RUNNING_PERCENT of the jobs, 3 priorities over the projects.
#   http      plain, with the HTTP front on and FARM_HTTP_STREAMS (20) monitors open on
#             the jobs page: each reads the live stream as the page does, with the
#             rows it shows (/api/v1/stream?tasks=none&jobs=ID,...&newer_than=TOP:
#             those jobs' changes and the moves of newer jobs;
#             FARM_HTTP_READER_MOVES=all: every job's moves, as the page read them
#             before stop 28), and reopens it when its first page of 100 jobs
#             changes; that page is read every second. Niced like the simulator
#             (browsers are on other hosts): what watching costs dispatch.
#   idle      plain, with the HTTP front on and nobody watching (what keeping the
#             job board and serving costs the loop by itself).
#   hostile   plain, with the HTTP front on and bench/http_attacker.py holding
#             FARM_HTTP_ATTACK_CONNS (10,000) slowloris connections and sending 64 KB
#             headers: what an attack on the HTTP port costs dispatch.
# The main runs use a plain worker endpoint (FARM_CURVE=false): 2,000 CurveZMQ client
# handshakes in one simulator process cost about 1 s of CPU on the same 2 cores as the
# broker, where a real farm spreads them over 2,000 hosts. One extra plain run with
# CurveZMQ on (FARM_CURVE_CHECK=1) reports what the handshakes add to the fill.
# The simulator runs at nice FARM_SIM_NICE (10): it stands for 2,000 other hosts, whose
# CPU is not the broker host's; its status prober (a wrangler's `farmhand status`) takes
# the default priority back. FARM_SIM_NICE=0 makes the farm compete with the broker on
# equal terms for the same cores (a harsher test than any real farm).
# FARM_BROKER_CPUS (a taskset list, e.g. 0; unset: everything shares every core) gives the
# broker those CPUs and everything else (the simulated farm, its prober, the watchers) the
# others, as on a real farm, where the workers and the browsers are other hosts: the
# broker's figures are then its own, not what 2,000 simulated workers and 20 simulated
# browsers took from it on the same cores. The broker's own threads (the HTTP front's, the
# live stream's) stay on its CPUs.
# controls also has fair share (`shares:` weights 1-4 over the projects, FARM_SHARES=0
# leaves it out) and memory requests (FARM_MEMORY_MB, default 3072, on 40% of the jobs;
# every worker reports 32 cores and 64 GiB, so memory is checked on every dispatch but
# never binds before the slots do, and "every slot busy" stays reachable).
#
# Then the cost of one dispatch against the number of queued jobs (FARM_GROWTH, e.g.
# "100 1000 10000 100000"; empty skips it), on a small farm (FARM_GROWTH_WORKERS x
# FARM_SLOTS), about FARM_GROWTH_TASKS tasks in all, for each of FARM_GROWTH_CONFIGS.
#
# usage: bench/farm.sh BUILD_DIR
#   env: FARM_WORKERS (2000) FARM_SLOTS (16) FARM_JOBS (10000) FARM_TASKS_PER_JOB (50)
#        FARM_PROJECTS (20) FARM_REPS (3) FARM_WARMUP_S (1) FARM_SUSTAIN_S (5) FARM_TASK_MS (0)
#        FARM_THREADS (1) FARM_STATUS_MS (10) FARM_CONFIGS ("plain controls") FARM_SIM_NICE (10)
#        FARM_LIMIT_PERMILLE ("60 30 15") FARM_LIMITED_PERCENT (30) FARM_MAX_RUNNING_PERCENT (20)
#        FARM_GROWTH ("100 1000 10000 100000") FARM_GROWTH_WORKERS (100)
#        FARM_GROWTH_TASKS (500000) FARM_GROWTH_SUSTAIN_S (2) FARM_GROWTH_REPS (3)
#        FARM_GROWTH_CONFIGS ("plain controls")
#        FARM_BROKER_CPUS (unset) FARM_CURVE (false: the main runs' worker endpoint is plain) FARM_CURVE_CHECK (1: one more
#        plain run with CurveZMQ on, for its fill time) FARM_PERF_DIR (a `perf record -g` of the broker for each main run,
#        submit to end, is kept there when perf may record; it slows the broker: profiling only)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

FARM=$BENCH_BIN/farmhand_bench_farm
[[ -x "$FARM" ]] || die "missing $FARM: build first (cmake --build $1 --target farmhand_bench_farm)"

WORKERS=${FARM_WORKERS:-2000}
SLOTS=${FARM_SLOTS:-16}
JOBS=${FARM_JOBS:-10000}
TASKS_PER_JOB=${FARM_TASKS_PER_JOB:-50}
PROJECTS=${FARM_PROJECTS:-20}
REPS=${FARM_REPS:-3}
WARMUP_S=${FARM_WARMUP_S:-1}
SUSTAIN_S=${FARM_SUSTAIN_S:-5}
TASK_MS=${FARM_TASK_MS:-0}
THREADS=${FARM_THREADS:-1}
STATUS_MS=${FARM_STATUS_MS:-10}
SIM_NICE=${FARM_SIM_NICE:-10}
# The stream readers and the monitor stand for browsers on wranglers' desktops:
# niced like the simulated farm (FARM_HTTP_READER_NICE=0: on equal terms).
READER_NICE=${FARM_HTTP_READER_NICE:-$SIM_NICE}
READER_MOVES=${FARM_HTTP_READER_MOVES:-newer}
CONFIGS=${FARM_CONFIGS:-plain controls}
read -r -a PERMILLE <<<"${FARM_LIMIT_PERMILLE:-60 30 15}"
LIMITED_PERCENT=${FARM_LIMITED_PERCENT:-30}
MAX_RUNNING_PERCENT=${FARM_MAX_RUNNING_PERCENT:-20}
GROWTH=${FARM_GROWTH-100 1000 10000 100000}
GROWTH_WORKERS=${FARM_GROWTH_WORKERS:-100}
GROWTH_TASKS=${FARM_GROWTH_TASKS:-500000}
GROWTH_SUSTAIN_S=${FARM_GROWTH_SUSTAIN_S:-2}
GROWTH_REPS=${FARM_GROWTH_REPS:-3}
GROWTH_CONFIGS=${FARM_GROWTH_CONFIGS:-plain controls}
CURVE=${FARM_CURVE:-false}
CURVE_CHECK=${FARM_CURVE_CHECK:-1}
BROKER_CPUS=${FARM_BROKER_CPUS:-}
OTHER_CPUS=all
if [[ -n "$BROKER_CPUS" ]]; then
  # Every CPU this script may use but the broker's; the script and all it starts
  # run there, the broker is moved to its own (launch_broker).
  OTHER_CPUS=$(/usr/bin/python3 - "$BROKER_CPUS" <<'PY'
import os, sys
mine = set()
for part in sys.argv[1].split(","):
    low, _, high = part.partition("-")
    mine.update(range(int(low), int(high or low) + 1))
rest = sorted(os.sched_getaffinity(0) - mine)
if not rest or not mine <= os.sched_getaffinity(0):
    sys.exit("FARM_BROKER_CPUS=%s must name some, not all, of CPUs %s"
             % (sys.argv[1], sorted(os.sched_getaffinity(0))))
print(",".join(map(str, rest)))
PY
  ) || die "cannot split the CPUs"
  taskset -cp "$OTHER_CPUS" $$ >/dev/null || die "taskset failed"
  export BENCH_BROKER_CPUS=$BROKER_CPUS
fi
LIMIT_NAMES=(lic-a lic-b lic-c)

# Each simulated worker holds two descriptors (its socket's mailbox and its
# connection), the broker one per worker.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need_fds=$((2 * WORKERS + 256))
[[ "$(ulimit -n)" = unlimited || "$(ulimit -n)" -ge "$need_fds" ]] ||
  die "open file limit $(ulimit -n) is under the $need_fds that $WORKERS workers need"

have_perf=0
if [[ -n "${FARM_PERF_DIR:-}" ]] && command -v perf >/dev/null &&
  perf record -o /dev/null -g true >/dev/null 2>&1; then
  have_perf=1
  mkdir -p "$FARM_PERF_DIR"
fi

# page_reader: one monitor's jobs page: streams the changes of the rows it shows
# (the ids in $BENCH_WORK/page, which the page poller keeps) and the moves of
# the jobs that could come onto it (unfiltered and newest first: newer jobs),
# and reopens the stream when the rows change, as web/jobs.js does.
page_reader() {
  local ids="" now reader="" tick newer
  trap '[[ -z $reader ]] || kill "$reader" 2>/dev/null; exit 0' TERM
  # Waits with bash's own read -t on a pipe nothing writes to: 20 readers
  # forking sleep and cat every second cost the shared cores more than the
  # streams they stand for.
  exec {tick}<> <(:)
  while :; do
    now=""
    [[ -r "$BENCH_WORK/page" ]] && read -r now <"$BENCH_WORK/page" || true
    if [[ -z $reader || "$now" != "$ids" ]] || ! kill -0 "$reader" 2>/dev/null; then
      [[ -z $reader ]] || kill "$reader" 2>/dev/null || true
      ids=$now
      # The first page (newest first, no filter) wants the moves of newer jobs
      # only; FARM_HTTP_READER_MOVES=all: every job's, as the page asked before.
      newer=""
      if [[ -n $ids && "$READER_MOVES" != all ]]; then
        newer="&newer_than=$(tr ',' '\n' <<<"$ids" | sort -n | tail -n 1)"
      fi
      nice -n "$READER_NICE" curl -sN \
        "http://$BENCH_HTTP/api/v1/stream?tasks=none&jobs=${ids:-states}$newer" >/dev/null 2>&1 &
      reader=$!
    fi
    read -r -t 1 -u "$tick" _ || true
  done
}

# page_poller: the jobs page's first 100 rows, read every second, their ids to
# $BENCH_WORK/page when they change. One process, as a browser is: forking curl,
# grep, paste, mv and sleep every second cost the shared cores more than the
# request (ends with the broker: a request that fails ends it).
page_poller() {
  exec nice -n "$READER_NICE" /usr/bin/python3 - "$BENCH_HTTP" "$BENCH_WORK/page" <<'PY'
import json, os, sys, time, urllib.request
url, page = "http://%s/api/v1/jobs?limit=100" % sys.argv[1], sys.argv[2]
last = None
while True:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            ids = ",".join(str(job["id"]) for job in json.load(reply)["list"]["jobs"])
    except (OSError, ValueError, KeyError):
        sys.exit(0)
    if ids != last:
        with open(page + ".new", "w") as out:
            out.write(ids + "\n")
        os.replace(page + ".new", page)
        last = ids
    time.sleep(1)
PY
}

# farm_config PATH TOTAL_SLOTS CONFIG: the benchmarks' config, plus the limits for controls.
farm_config() {
  local path=$1 total=$2 config=$3 i
  write_config "$path" 1
  [[ "$config" = controls ]] || return 0
  echo "limits:" >>"$path"
  for i in "${!LIMIT_NAMES[@]}"; do
    echo "  ${LIMIT_NAMES[$i]}: $(( (total * ${PERMILLE[$i]} + 999) / 1000 ))" >>"$path"
  done
  if [[ "${FARM_SHARES:-1}" != 0 ]]; then
    echo "shares:" >>"$path"
    for ((i = 0; i < PROJECTS; i++)); do
      printf '  proj-%02d: %d\n' "$i" $((1 + i % 4)) >>"$path"
    done
  fi
}

# controls_args CONFIG: the simulator's flags for that configuration.
controls_args() {
  CONTROL_ARGS=()
  [[ "$1" = controls ]] || return 0
  if [[ "${FARM_SHARES:-1}" != 0 ]]; then
    CONTROL_ARGS+=(--shares "weights 1-4 over $PROJECTS projects")
  fi
  CONTROL_ARGS+=(--memory-mb "${FARM_MEMORY_MB:-3072}")
  local name
  CONTROL_ARGS+=(--pools 3 --priorities 3 --max-running 2
    --max-running-percent "$MAX_RUNNING_PERCENT" --limited-percent "$LIMITED_PERCENT")
  for name in "${LIMIT_NAMES[@]}"; do CONTROL_ARGS+=(--limit "$name"); done
}

# farm_run OUT CONFIG WORKERS JOBS TASKS_PER_JOB SUSTAIN_S [PERF_OUT [CURVE]]: one broker, one
# simulated farm.
farm_run() {
  local out=$1 config=$2 workers=$3 jobs=$4 per_job=$5 sustain=$6 perf_out=${7:-}
  local state=$BENCH_WORK/state conf=$BENCH_WORK/farm.yaml
  WORKER_CURVE=${8:-$CURVE}  # read by write_config and admit_fake_worker
  rm -rf "$state"
  BENCH_HTTP=off
  if [[ "$config" = http || "$config" = hostile || "$config" = idle ]]; then
    BENCH_HTTP=127.0.0.1:$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  farm_config "$conf" $((workers * SLOTS)) "$config"
  controls_args "$config"
  admit_fake_worker "$state"
  start_broker "$conf" "$state" 0
  local watchers=() i
  if [[ "$config" = http ]]; then
    rm -f "$BENCH_WORK/page"
    page_poller &
    watchers+=("$!")
    for ((i = 0; i < ${FARM_HTTP_STREAMS:-20}; i++)); do
      page_reader &
      watchers+=("$!")
    done
    BENCH_PIDS+=("${watchers[@]}")
  elif [[ "$config" = hostile ]]; then
    /usr/bin/python3 "$(dirname "$0")/http_attacker.py" "${BENCH_HTTP%:*}" "${BENCH_HTTP##*:}" \
      "${FARM_HTTP_ATTACK_CONNS:-10000}" >"$BENCH_WORK/attacker.log" 2>&1 &
    watchers+=("$!")
    BENCH_PIDS+=("${watchers[@]}")
    # The attack is on before the farm starts.
    for _ in $(seq 600); do grep -q holding "$BENCH_WORK/attacker.log" && break; sleep 0.1; done
  fi
  local perf_pid=
  if [[ -n "$perf_out" ]]; then
    # Starts with the run and stops after warm-up + window + a margin; the profile
    # then covers submit and fill too (perf cannot be told when the window starts).
    # shellcheck disable=SC2086  # FARM_PERF_FLAGS is a list of flags
    perf record ${FARM_PERF_FLAGS:--g} -o "$perf_out" -p "$BROKER_PID" 2>/dev/null >/dev/null &
    perf_pid=$!
    BENCH_PIDS+=("$perf_pid")
  fi
  nice -n "$SIM_NICE" "$FARM" --worker-endpoint "$WORKER_EP" --broker "$CLIENT_EP" "${FAKE_WORKER_CURVE[@]}" \
    --broker-pid "$BROKER_PID" --workers "$workers" --slots "$SLOTS" --threads "$THREADS" \
    --jobs "$jobs" --tasks-per-job "$per_job" --projects "$PROJECTS" --task-ms "$TASK_MS" \
    --warmup-s "$WARMUP_S" --sustain-s "$sustain" --status-interval-ms "$STATUS_MS" \
    "${CONTROL_ARGS[@]}" >"$out" || {
    [[ -z "$perf_pid" ]] || stop_pid "$perf_pid" INT
    stop_broker
    die "farm run failed ($config, $workers workers, $jobs jobs): $(tr '\n' ' ' <"$out")"
  }
  [[ -z "$perf_pid" ]] || stop_pid "$perf_pid" INT
  for i in "${watchers[@]}"; do stop_pid "$i"; done
  stop_broker
  rm -rf "$state"
}

# run_order LIST REP: sets ORDER to the words of LIST, reversed on even repetitions, so
# that drift in the machine's load falls on every configuration alike.
run_order() {
  read -r -a ORDER <<<"$1"
  if (( $2 % 2 == 0 )); then mapfile -t ORDER < <(printf '%s\n' "${ORDER[@]}" | tac); fi
}

# collect PREFIX KEY...: for each KEY, PREFIX_KEY=median and PREFIX_KEY_all=the runs, from
# the files in RUN_FILES.
collect() {
  local prefix=$1 key f runs
  shift
  for key in "$@"; do
    runs=()
    for f in "${RUN_FILES[@]}"; do
      local v
      v=$(val "$f" "$key")
      [[ -n "$v" ]] && runs+=("$v")
    done
    [[ ${#runs[@]} -gt 0 ]] || continue
    echo "${prefix}_${key}=$(median "${runs[@]}")"
    echo "${prefix}_${key}_all=${runs[*]}"
  done
}

KEYS=(submit_ms submit_jobs_per_s fill_ms fill_first_assign_ms fill_all_welcomed_ms
  fill_after_last_welcome_ms fill_broker_cpu_ms fill_sim_cpu_ms fill_broker_cpu_us_per_dispatch
  sustain_tasks_per_s sustain_acked_per_s sustain_broker_cpu_us_per_dispatch
  sustain_wall_us_per_dispatch sustain_sim_cpu_us_per_dispatch status_idle_p99_ms
  status_fill_p50_ms status_fill_p99_ms status_sustain_p50_ms status_sustain_p99_ms
  status_sustain_max_ms status_sustain_count rss_queued_kib rss_full_kib rss_end_kib
  rss_peak_kib rss_per_queued_job_bytes sustain_machine_busy_cores
  sustain_machine_steal_cores)

echo "farm_workers=$WORKERS"
echo "farm_slots=$SLOTS"
echo "farm_jobs=$JOBS"
echo "farm_tasks_per_job=$TASKS_PER_JOB"
echo "farm_projects=$PROJECTS"
echo "farm_reps=$REPS"
echo "farm_task_ms=$TASK_MS"
echo "farm_sustain_s=$SUSTAIN_S"
echo "farm_worker_curve=$CURVE"
echo "farm_broker_cpus=${BROKER_CPUS:-all}"
echo "farm_other_cpus=$OTHER_CPUS"
echo "farm_limit_capacities=$(for i in "${!LIMIT_NAMES[@]}"; do
  printf '%s:%s ' "${LIMIT_NAMES[$i]}" $(( (WORKERS * SLOTS * ${PERMILLE[$i]} + 999) / 1000 ))
done)"

declare -A files
for rep in $(seq "$REPS"); do
  run_order "$CONFIGS" "$rep"
  for config in "${ORDER[@]}"; do
    out=$BENCH_WORK/farm-$config-$rep.out
    perf_out=
    if [[ $have_perf = 1 ]]; then perf_out=$FARM_PERF_DIR/farm-$config-$rep.data; fi
    log "farm $config rep $rep/$REPS: $WORKERS workers x $SLOTS slots, $JOBS jobs x $TASKS_PER_JOB tasks"
    farm_run "$out" "$config" "$WORKERS" "$JOBS" "$TASKS_PER_JOB" "$SUSTAIN_S" "$perf_out"
    log "  fill $(val "$out" fill_ms) ms, $(val "$out" sustain_tasks_per_s) tasks/s," \
      "$(val "$out" sustain_broker_cpu_us_per_dispatch) us CPU/dispatch," \
      "status p99 $(val "$out" status_sustain_p99_ms) ms, rss $(val "$out" rss_peak_kib) KiB"
    files[$config]+="$out "
  done
done
if [[ "$CURVE_CHECK" = 1 && "$CURVE" != true ]]; then
  out=$BENCH_WORK/farm-curve.out
  log "farm plain with CurveZMQ on the worker endpoint: $WORKERS workers x $SLOTS slots"
  farm_run "$out" plain "$WORKERS" "$JOBS" "$TASKS_PER_JOB" 1 "" true
  log "  fill $(val "$out" fill_ms) ms (every Welcome at $(val "$out" fill_all_welcomed_ms) ms)," \
    "broker CPU $(val "$out" fill_broker_cpu_ms) ms, simulator CPU $(val "$out" fill_sim_cpu_ms) ms"
  for key in fill_ms fill_all_welcomed_ms fill_after_last_welcome_ms fill_broker_cpu_ms \
    fill_sim_cpu_ms status_fill_p99_ms; do
    echo "farm_curve_${key}=$(val "$out" "$key")"
  done
fi
for config in $CONFIGS; do
  [[ -n "${files[$config]:-}" ]] || continue
  read -r -a RUN_FILES <<<"${files[$config]}"
  first=${RUN_FILES[0]}
  for key in controls_pooled_jobs controls_limited_jobs controls_max_running_jobs \
    controls_shares_applied controls_memory_applied submit_tasks; do
    echo "farm_${config}_${key}=$(val "$first" "$key")"
  done
  # With each of the broker's threads (by name) as the runs found them.
  mapfile -t thread_keys < <(grep -ohE '^sustain_broker_thread_[A-Za-z0-9_]+_cpu_us_per_dispatch' \
    "${RUN_FILES[@]}" | sort -u)
  collect "farm_$config" "${KEYS[@]}" "${thread_keys[@]}"
done

# ---------------------------------------------------------------- growth with queued jobs

if [[ -n "$GROWTH" ]]; then
  echo "growth_workers=$GROWTH_WORKERS"
  echo "growth_tasks=$GROWTH_TASKS"
  echo "growth_sizes=$GROWTH"
  echo "growth_reps=$GROWTH_REPS"
  declare -A growth_files
  for rep in $(seq "$GROWTH_REPS"); do
    for jobs in $GROWTH; do
      per_job=$(( (GROWTH_TASKS + jobs - 1) / jobs ))
      run_order "$GROWTH_CONFIGS" "$rep"
      for config in "${ORDER[@]}"; do
        out=$BENCH_WORK/growth-$config-$jobs-$rep.out
        log "growth $config rep $rep/$GROWTH_REPS: $jobs queued jobs x $per_job tasks," \
          "$GROWTH_WORKERS workers x $SLOTS slots"
        farm_run "$out" "$config" "$GROWTH_WORKERS" "$jobs" "$per_job" "$GROWTH_SUSTAIN_S"
        log "  $(val "$out" sustain_broker_cpu_us_per_dispatch) us CPU/dispatch," \
          "$(val "$out" sustain_tasks_per_s) tasks/s, submit $(val "$out" submit_ms) ms"
        growth_files[$config-$jobs]+="$out "
      done
    done
  done
  for config in $GROWTH_CONFIGS; do
    for jobs in $GROWTH; do
      read -r -a RUN_FILES <<<"${growth_files[$config-$jobs]}"
      collect "growth_${config}_${jobs}" submit_ms sustain_tasks_per_s \
        sustain_broker_cpu_us_per_dispatch sustain_wall_us_per_dispatch fill_ms \
        status_sustain_p99_ms rss_queued_kib rss_per_queued_job_bytes
    done
  done
fi
