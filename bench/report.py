#!/usr/bin/python3
"""Print the benchmark results as a markdown table.

usage: bench/report.py RESULTS_FILE

RESULTS_FILE holds the key=value lines bench/dispatch.sh, bench/process_tasks.sh
and bench/scale.sh print (bench/run_all.sh collects them, plus a few machine_*
keys). Each row states farmhand's number, its peer or ceiling measured in the same
run, the ratio, the target from issue #3 and whether it is met.
"""

import sys


def load(path):
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                values[key] = value
    return values


def num(values, key):
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


def fmt_int(x):
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    if x is None:
        return "n/a"
    return f"{x:,.0f} ms" if x >= 100 else f"{x:.2f} ms"


def fmt_ratio(x):
    if x is None:
        return "n/a"
    return f"{x:.3f}×" if x < 0.1 else f"{x:.2f}×"


def spread(values, key, scale=1.0, digits=0):
    """' (runs a–b)' from a space-separated list of per-repetition values."""
    try:
        runs = [float(x) * scale for x in values[key].split()]
    except (KeyError, ValueError):
        return ""
    if len(runs) < 2:
        return ""
    return f" (runs {min(runs):,.{digits}f}–{max(runs):,.{digits}f})"


def verdict(ok):
    if ok is None:
        return "n/a"
    return "yes" if ok else "**no**"


def rows(v):
    out = []
    has = lambda *keys: all(num(v, k) is not None for k in keys)  # noqa: E731

    if has("dispatch_farmhand_per_s", "dispatch_zmq_per_s", "dispatch_sqlite_per_s"):
        fh = num(v, "dispatch_farmhand_per_s")
        zmq = num(v, "dispatch_zmq_per_s")
        sql = num(v, "dispatch_sqlite_per_s")
        ratio = fh / min(zmq, sql)
        out.append((
            f"Dispatch: {fmt_int(num(v, 'dispatch_tasks'))} noop tasks, "
            f"{v.get('dispatch_workers')} local workers × {v.get('dispatch_slots')} slots, "
            f"submit → succeeded (median of {v.get('dispatch_reps')})",
            f"{fmt_int(fh)} tasks/s{spread(v, 'dispatch_farmhand_all')}",
            f"ZeroMQ ROUTER/DEALER round trip: {fmt_int(zmq)} tasks/s"
            f"{spread(v, 'dispatch_zmq_all')}; SQLite per-task writes "
            f"({v.get('dispatch_batch')} tasks/commit, {v.get('dispatch_batch_source')}): "
            f"{fmt_int(sql)} tasks/s{spread(v, 'dispatch_sqlite_all')}",
            f"{fmt_ratio(ratio)} lower ceiling",
            "≥ 20,000 tasks/s and ≥ 0.5× lower ceiling",
            verdict(fh >= 20000 and ratio >= 0.5),
        ))
    if has("latency_p50_ms", "latency_p99_ms"):
        out.append((
            f"Task latency at 10% load ({fmt_int(num(v, 'latency_rate_per_s'))} one-task "
            f"jobs/s, {fmt_int(num(v, 'latency_samples'))} samples): submit sent → "
            "Assign received by the worker",
            f"p50 {fmt_ms(num(v, 'latency_p50_ms'))}, p99 {fmt_ms(num(v, 'latency_p99_ms'))}",
            f"Assign arrived before the submit reply in "
            f"{100 * (num(v, 'latency_assign_before_reply') or 0):.1f}% of jobs",
            "—",
            "—",
            "—",
        ))
    if has("process_farmhand_s", "process_xargs_s"):
        fh = num(v, "process_farmhand_s")
        xa = num(v, "process_xargs_s")
        out.append((
            f"Process tasks: `command` job of {fmt_int(num(v, 'process_frames'))} frames, "
            f"chunk 1, /bin/true, 2 workers × 1 slot (median of {v.get('process_reps')})",
            f"{fh:.2f} s{spread(v, 'process_farmhand_all', digits=2)}; farmhand's own CPU "
            f"{num(v, 'process_farmhand_cpu_us_per_task') or 0:.0f} µs/task",
            f"`seq {fmt_int(num(v, 'process_frames')).replace(',', '')} \\| xargs -P 2 -n1 "
            f"/bin/true`: {xa:.2f} s{spread(v, 'process_xargs_all', digits=2)}; CPU incl. "
            f"/bin/true {num(v, 'process_xargs_cpu_us_per_task') or 0:.0f} µs/task",
            fmt_ratio(fh / xa),
            "≤ 1.5×",
            verdict(fh / xa <= 1.5),
        ))
    if has("scale_chunk1_ms", "scale_chunk1_sqlite3_ms"):
        fh = num(v, "scale_chunk1_ms")
        sq = num(v, "scale_chunk1_sqlite3_ms")
        out.append((
            f"Submit frames 1-{fmt_int(num(v, 'scale_frames')).replace(',', '')}, chunk 1 "
            "(a million tasks) until acknowledged",
            f"{fmt_ms(fh)} (CLI process: {fmt_ms(num(v, 'scale_chunk1_cli_ms'))})",
            f"sqlite3 shell, same rows in one transaction: {fmt_ms(sq)}",
            fmt_ratio(fh / sq),
            "< 3 s and ≤ 2×",
            verdict(fh < 3000 and fh / sq <= 2 and num(v, "scale_chunk1_cli_ms") < 3000),
        ))
    if has("scale_chunk10_ms", "scale_chunk10_sqlite3_ms"):
        fh = num(v, "scale_chunk10_ms")
        sq = num(v, "scale_chunk10_sqlite3_ms")
        out.append((
            "Same at chunk 10 (100,000 tasks)",
            f"{fmt_ms(fh)} (CLI process: {fmt_ms(num(v, 'scale_chunk10_cli_ms'))})",
            f"sqlite3 shell, 100,000 rows: {fmt_ms(sq)}",
            fmt_ratio(fh / sq),
            "< 1 s",
            verdict(fh < 1000 and num(v, "scale_chunk10_cli_ms") < 1000),
        ))
    if has("scale_status_window_p99_ms", "scale_turnaround_window_p99_ms"):
        st = num(v, "scale_status_window_p99_ms")
        tu = num(v, "scale_turnaround_window_p99_ms")
        worst = max(num(v, "scale_status_window_max_ms") or 0,
                    num(v, "scale_turnaround_window_max_ms") or 0)
        out.append((
            "Broker response while the million-task submit is handled: status round trip "
            "and worker result → next Assign",
            f"status p99 {fmt_ms(st)}, worker turnaround p99 {fmt_ms(tu)} "
            f"(worst {fmt_ms(worst)})",
            f"whole run: status p99 {fmt_ms(num(v, 'scale_status_p99_ms'))}, turnaround p99 "
            f"{fmt_ms(num(v, 'scale_turnaround_p99_ms'))}",
            "—",
            "p99 < 50 ms",
            verdict(max(st, tu) < 50),
        ))
    if has("scale_bytes_per_task"):
        b = num(v, "scale_bytes_per_task")
        out.append((
            "Broker memory per queued task (VmRSS before/after the million-task job)",
            f"{b:.1f} B/task",
            f"RSS {num(v, 'scale_rss_before_bytes') / 2**20:.1f} → "
            f"{num(v, 'scale_rss_after_bytes') / 2**20:.1f} MiB",
            "—",
            "≤ 256 B",
            verdict(b <= 256),
        ))
    if has("recovery_cli_ms", "recovery_ready_ms"):
        cli = num(v, "recovery_cli_ms")
        out.append((
            f"Recovery: kill -9 with {fmt_int(num(v, 'recovery_tasks'))} tasks in "
            f"{fmt_int(num(v, 'recovery_jobs'))} jobs queued, restart, until `farmhand ls` "
            "answers",
            fmt_ms(cli),
            f"broker answering: {fmt_ms(num(v, 'recovery_ready_ms'))}; restore itself: "
            f"{fmt_ms(num(v, 'recovery_restore_ms'))}",
            "—",
            "< 2 s",
            verdict(cli < 2000),
        ))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS_FILE")
    v = load(sys.argv[1])
    if "machine_cpu" in v:
        print(f"Measured {v.get('machine_date')} on {v.get('machine_nproc')} × "
              f"{v.get('machine_cpu')}, {v.get('machine_kernel')}; load average at start "
              f"{v.get('machine_loadavg')}; run took {v.get('machine_run_s')} s.")
        print()
    print("| benchmark | farmhand | peer / ceiling (same run) | ratio | target | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows(v):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
