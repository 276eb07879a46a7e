#!/usr/bin/python3
"""Print bench/farm.sh's results as markdown tables.

usage: bench/farm_report.py RESULTS_FILE

RESULTS_FILE holds the key=value lines bench/farm.sh prints (bench/run_all.sh
collects them with the other scripts'). When bench/dispatch.sh's results are in
the same file, the plain farm's broker CPU per dispatch is set against them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import load, num  # noqa: E402 (the results format is report.py's)


def runs(values, key):
    try:
        return [float(x) for x in values[key + "_all"].split()]
    except (KeyError, ValueError):
        return []


def fmt(x, unit="", digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}{unit}"


def with_runs(values, key, unit="", digits=0):
    text = fmt(num(values, key), unit, digits)
    r = runs(values, key)
    if len(r) > 1:
        text += f" (runs {min(r):,.{digits}f}–{max(r):,.{digits}f})"
    return text


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


def verdict(ok):
    if ok is None:
        return "n/a"
    return "yes" if ok else "**no**"


def check(x, test):
    return None if x is None else test(x)


def farm_table(v):
    p, c = "farm_plain_", "farm_controls_"
    workers, slots = v.get("farm_workers", "?"), v.get("farm_slots", "?")
    reps = v.get("farm_reps", "?")
    print(f"Farm: {workers} simulated workers × {slots} slots, {v.get('farm_jobs')} queued "
          f"noop jobs × {v.get('farm_tasks_per_job')} tasks across {v.get('farm_projects')} "
          f"projects; medians of {reps} runs per configuration (worker endpoint CurveZMQ: "
          f"{v.get('farm_worker_curve')}).")
    print(f"controls: {fmt(num(v, c + 'controls_limited_jobs'))} jobs carry one of 3 limits "
          f"({v.get('farm_limit_capacities', '').strip()}), "
          f"{fmt(num(v, c + 'controls_pooled_jobs'))} are in one of 3 pools, "
          f"{fmt(num(v, c + 'controls_max_running_jobs'))} have max running 2, 3 priorities; "
          f"shares: {v.get(c + 'controls_shares_applied', 'n/a')}; "
          f"memory requests: {v.get(c + 'controls_memory_applied', 'n/a')}.")
    print()
    print("| figure | plain | controls | controls / plain | target | met (plain / controls) |")
    print("| --- | --- | --- | --- | --- | --- |")

    def row(label, key, unit, digits, target, test):
        a, b = num(v, p + key), num(v, c + key)
        met = f"{verdict(check(a, test))} / {verdict(check(b, test))}" if test else "—"
        print(f"| {label} | {with_runs(v, p + key, unit, digits)} | "
              f"{with_runs(v, c + key, unit, digits)} | {ratio(b, a)} | {target} | {met} |")

    row("Empty farm → every slot busy (first Ready sent → last slot's Assign)", "fill_ms",
        " ms", 0, "< 1 s", lambda x: x < 1000)
    row("… of which: until every worker is welcomed", "fill_all_welcomed_ms", " ms", 0, "—",
        None)
    row("… broker CPU per dispatch during the fill (Readys included)",
        "fill_broker_cpu_us_per_dispatch", " µs", 1, "—", None)
    row("Sustained tasks/s (`--task-ms 0`, every slot cycling)", "sustain_tasks_per_s", "", 0,
        "≥ 20,000", lambda x: x >= 20000)
    row("Status round trip p99 under that load", "status_sustain_p99_ms", " ms", 0, "< 10 ms",
        lambda x: x < 10)
    row("… p50", "status_sustain_p50_ms", " ms", 0, "—", None)
    row("… samples in the window (sequential requests)", "status_sustain_count", "", 0, "—",
        None)
    row("Broker CPU per dispatch, sustained", "sustain_broker_cpu_us_per_dispatch", " µs", 1,
        "—", None)
    row("Simulator CPU per dispatch (all 2 cores are shared)",
        "sustain_sim_cpu_us_per_dispatch", " µs", 1, "—", None)
    row("Broker RSS with the jobs queued, before any worker", "rss_queued_kib", " KiB", 0, "—",
        None)
    row("Broker RSS, peak (end of the run)", "rss_peak_kib", " KiB", 0, "—", None)
    row("Submit of the jobs (pipelined, one client)", "submit_ms", " ms", 0, "—", None)
    fill = num(v, "farm_curve_fill_ms")
    if fill is not None:
        print(f"| Fill with CurveZMQ on (one plain run) | {fmt(fill, ' ms')} (welcomed at "
              f"{fmt(num(v, 'farm_curve_fill_all_welcomed_ms'), ' ms')}; broker CPU "
              f"{fmt(num(v, 'farm_curve_fill_broker_cpu_ms'), ' ms')}, simulator CPU "
              f"{fmt(num(v, 'farm_curve_fill_sim_cpu_ms'), ' ms')}) | | | < 1 s | "
              f"{verdict(fill < 1000)} |")
    farm_cpu = num(v, p + "sustain_broker_cpu_us_per_dispatch")
    dispatch_cpu = num(v, "dispatch_broker_cpu_us_per_task")
    if farm_cpu is not None and dispatch_cpu is not None:
        print(f"| Broker CPU per dispatch, plain farm vs `dispatch.sh` (2 local workers × "
              f"{v.get('dispatch_slots', '?')}, same session; other shape) | "
              f"{fmt(farm_cpu, ' µs', 1)} | dispatch.sh: {fmt(dispatch_cpu, ' µs', 1)} | "
              f"{ratio(farm_cpu, dispatch_cpu)} | same as dispatch.sh | "
              f"{verdict(farm_cpu <= 1.2 * dispatch_cpu)} |")


def growth_table(v):
    sizes = v.get("growth_sizes", "").split()
    if not sizes:
        return
    configs = [c for c in ("plain", "controls")
               if num(v, f"growth_{c}_{sizes[0]}_sustain_broker_cpu_us_per_dispatch") is not None]
    print()
    print(f"Dispatch cost against queued jobs: {v.get('growth_workers')} workers × "
          f"{v.get('farm_slots')} slots, about {fmt(num(v, 'growth_tasks'))} tasks in all "
          f"(median of {v.get('growth_reps', '1')} runs each).")
    print()
    head = " | ".join(f"{c}: broker CPU / dispatch | {c}: wall / dispatch" for c in configs)
    print(f"| queued jobs | {head} |")
    print("| --- |" + " --- | --- |" * len(configs))
    for size in sizes:
        cells = []
        for c in configs:
            cells.append(fmt(num(v, f"growth_{c}_{size}_sustain_broker_cpu_us_per_dispatch"),
                             " µs", 1))
            cells.append(fmt(num(v, f"growth_{c}_{size}_sustain_wall_us_per_dispatch"), " µs", 1))
        print(f"| {int(size):,} | " + " | ".join(cells) + " |")
    cells = []
    for c in configs:
        first = num(v, f"growth_{c}_{sizes[0]}_sustain_broker_cpu_us_per_dispatch")
        last = num(v, f"growth_{c}_{sizes[-1]}_sustain_broker_cpu_us_per_dispatch")
        cells.append(ratio(last, first))
        first = num(v, f"growth_{c}_{sizes[0]}_sustain_wall_us_per_dispatch")
        last = num(v, f"growth_{c}_{sizes[-1]}_sustain_wall_us_per_dispatch")
        cells.append(ratio(last, first))
    print(f"| growth {int(sizes[0]):,} → {int(sizes[-1]):,} | " + " | ".join(cells) + " |")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    v = load(sys.argv[1])
    if "farm_workers" not in v and "growth_sizes" not in v:
        print("no farm.sh results", file=sys.stderr)
        return 1
    if num(v, "farm_plain_fill_ms") is not None or num(v, "farm_controls_fill_ms") is not None:
        farm_table(v)
    growth_table(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
