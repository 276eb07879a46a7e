#!/usr/bin/python3
"""The web monitor's render times at size, in headless Chromium (not a test).

Starts farmhandd with no workers (so everything stays queued), submits JOBS
noop jobs of TASKS_PER_JOB tasks and one noop job of TASKS tasks over the
Python client (by default 10,000 jobs and 1,000,000 tasks in all), then:

- times the HTTP API from this process (one connection, REQUESTS requests each,
  p50 and p99): the first page of jobs, a filtered page sorted by name, the big
  job with a page of its tasks, its task states for the grid, and /metrics;
- opens the jobs page and the big job's page in headless Chromium and reads the
  Performance API measures the page sets: `jobs:render` (route entered -> first
  page of 100 rows drawn) and `grid:render` (route entered -> every task's state
  fetched and the canvas drawn). Also reports the whole load (navigation start
  -> measure end).

    PYTHONPATH=build/python FARMHAND_BIN_DIR=build/bin /usr/bin/python3 bench/web_monitor_bench.py \
        [--jobs 10000] [--tasks-per-job 90] [--tasks 100000] [--runs 5] [--requests 200]
"""

import argparse
import http.client
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "web"))

from conftest import Farm, make_browser  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import farmhand  # noqa: E402  (PYTHONPATH=build/python)


def measure(browser, url, name, runs):
    spans, totals = [], []
    for _ in range(runs):
        browser.get("about:blank")
        browser.get(url)
        try:
            WebDriverWait(browser, 120).until(
                lambda b: b.execute_script("return performance.getEntriesByName(arguments[0]).length", name))
        except Exception:
            raise SystemExit("%s: no %s measure; the page says: %r" % (url, name, browser.execute_script(
                "return document.getElementById('notice').textContent")))
        span, end = browser.execute_script(
            "const m = performance.getEntriesByName(arguments[0])[0]; return [m.duration, m.startTime + m.duration];",
            name)
        print("  %s run %d: %.0f ms in the route, %.0f ms from navigation" % (name, len(spans) + 1, span, end),
              file=sys.stderr)
        if end > 5000:
            for entry in browser.execute_script(
                    "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
                    ".map(e => [e.name, e.startTime, e.duration, e.connectStart, e.requestStart, e.responseStart])"):
                print("    slow run: %s start %.0f dur %.0f connect %.0f request %.0f response %.0f" % tuple(entry),
                      file=sys.stderr)
        spans.append(span)
        totals.append(end)
    return statistics.median(spans), statistics.median(totals), min(totals), max(totals)


def api_latency(url, paths, requests):
    """p50 and p99 in ms of GET path over one kept-alive connection, per path."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    out = []
    for label, path in paths:
        times, size = [], 0
        for _ in range(requests):
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            times.append((time.perf_counter() - t0) * 1000.0)
            if response.status != 200:
                raise SystemExit("%s: HTTP %d %r" % (path, response.status, body[:200]))
            size = len(body)
        times.sort()
        out.append((label, times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))], size))
    conn.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--tasks-per-job", type=int, default=90)
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--no-api", action="store_true", help="browser measures only")
    ap.add_argument("--gzip", action="store_true",
                    help="the browser asks for gzip only (no brotli: see the report in README)")
    args = ap.parse_args()

    farm = Farm(local_workers=0)  # no workers: the queue stays as submitted
    browser = None
    try:
        farm.start()
        client = farmhand.Client(farm.client_endpoint, timeout=30)
        t0 = time.monotonic()
        for i in range(args.jobs):
            client.submit("noop", tasks=args.tasks_per_job, name="bench-%05d" % i, project="show%d" % (i % 7))
        big = int(client.submit("noop", tasks=args.tasks, name="big"))
        print("queued %d jobs of %d tasks and a %d-task job (%d tasks in all) in %.1f s"
              % (args.jobs, args.tasks_per_job, args.tasks, args.jobs * args.tasks_per_job + args.tasks,
                 time.monotonic() - t0))
        for label, p50, p99, size in [] if args.no_api else api_latency(farm.url, [
                ("jobs, first page of 100", "/api/v1/jobs?limit=100"),
                ("jobs, one project by name", "/api/v1/jobs?project=show3&sort=name&limit=100"),
                ("jobs, text search", "/api/v1/jobs?text=bench-0999&limit=100"),
                ("big job + 100 tasks", "/api/v1/jobs/%d?tasks_limit=100" % big),
                ("big job task states", "/api/v1/jobs/%d/states" % big),
                ("/metrics scrape", "/metrics")], args.requests):
            print("api %-26s p50 %7.2f ms  p99 %7.2f ms  (%d bytes)" % (label, p50, p99, size))

        browser = make_browser()
        if args.gzip:
            browser.execute_cdp_cmd("Network.enable", {})
            browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Accept-Encoding": "gzip"}})
        jobs = measure(browser, farm.url + "/#/jobs", "jobs:render", args.runs)
        grid = measure(browser, farm.url + "/#/jobs/%d" % big, "grid:render", args.runs)
        draw, first = browser.execute_script(
            "return ['grid:draw', 'grid:first-page'].map(n => performance.getEntriesByName(n)[0].duration)")
        print("task grid: first page of 10,000 shown %.0f ms after the route; canvas draw of %d tasks %.0f ms (last run)"
              % (first, args.tasks, draw))
        for label, (span, total, lo, hi) in (("jobs page", jobs), ("task grid", grid)):
            print("%-10s render %6.0f ms (median of %d); load from navigation %6.0f ms (min %.0f, max %.0f)"
                  % (label, span, args.runs, total, lo, hi))
    finally:
        if browser is not None:
            browser.quit()
        farm.stop()


if __name__ == "__main__":
    main()
