#!/usr/bin/python3
"""The web monitor's render times at size, in headless Chromium (not a test).

Starts farmhandd with no workers (so everything stays queued), submits JOBS
noop jobs and one noop job of TASKS tasks over the Python client, then opens
the jobs page and that job's page and reads the Performance API measures the
page sets: `jobs:render` (route entered -> first page of 100 rows drawn) and
`grid:render` (route entered -> every page of tasks fetched and the canvas
drawn). Also reports the whole load (navigation start -> measure end).

    PYTHONPATH=build/python FARMHAND_BIN_DIR=build/bin /usr/bin/python3 bench/web_monitor_bench.py \
        [--jobs 10000] [--tasks 100000] [--runs 5]
"""

import argparse
import statistics
import sys
import time
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
        spans.append(span)
        totals.append(end)
    return statistics.median(spans), statistics.median(totals), min(totals), max(totals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=5)
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
            client.submit("noop", tasks=1, name="bench-%05d" % i, project="show%d" % (i % 7))
        big = int(client.submit("noop", tasks=args.tasks, name="big"))
        print("queued %d jobs and a %d-task job in %.1f s" % (args.jobs, args.tasks, time.monotonic() - t0))

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
