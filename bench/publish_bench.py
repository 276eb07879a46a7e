#!/usr/bin/python3
"""Helper of bench/publish.sh (bench/README.md, "6. Publish"): drives a running farmhandd
through the Python client (python/farmhand, on PYTHONPATH) or raw ZeroMQ DEALER sockets.

  publish_bench.py latency --broker EP --path PATTERN --out-dir DIR [--count 50] [--warmup 3]
      One publish at a time, each with a fresh event id (the rule's output is
      DIR/{event}.jpg): time from publish() returning (the ack) to the thumbnail file
      existing, polled with os.path.exists every 0.5 ms. The output is written to a
      temporary name and renamed, so it exists only once it is complete. Before each
      publish a random pause of 0 to --gap-max-s seconds (default 1, the broker's heartbeat
      interval): publish hooks fire at random times, not in step with the broker's timers.
      --nudge (a diagnostic) sends one more request (`events` for the event) right after
      the ack, which makes the broker run another turn at once.
  publish_bench.py intake --broker EP --path PATH [--count 20000] [--clients 2] [--depth 64]
      COUNT publishes (fresh event ids) split over CLIENTS processes, each with one DEALER
      socket keeping DEPTH requests outstanding; acknowledged publishes per second, wall
      time from the start signal to the last ack. --expect-jobs N checks every ack.
  publish_bench.py echo --endpoint EP
      The transport ceiling's server: a ROUTER that answers every ClientRequest with an ok
      ClientReply{publish} echoing request_id and event_id (no rules, no storage).
  publish_bench.py sqlite --db FILE --schema SQL [--count 1000] [--batch 1]
      The durable-state peer: INSERTs of event rows (an EventInfo blob each) into the broker's
      events table, BATCH per transaction (WAL, synchronous=FULL, as the broker's store).
      --batch 1 is a publish database committing per event; --batch N at the broker's
      measured publishes per commit is the ceiling of its durable writes.

key=value results on stdout, progress on stderr.
"""

import argparse
import math
import multiprocessing as mp
import os
import random
import secrets
import sqlite3
import statistics
import sys
import time

import zmq

import farmhand
from farmhand import farmhand_pb2 as pb
from farmhand._protocol import PROTOCOL_VERSION


def log(*args):
    print("[%s]" % time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def kv(key, value):
    if isinstance(value, float):
        value = "%.6g" % value
    print("%s=%s" % (key, value), flush=True)


def percentile(values, q):
    """Nearest rank: the smallest value with at least q of the samples at or below it."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


# ------------------------------------------------------------------------------- latency


def cmd_latency(a):
    client = farmhand.Client(a.broker, timeout=30)
    run = secrets.token_hex(4)
    rng = random.Random(a.seed)

    def one(tag):
        event = "lat-%s-%s" % (run, tag)
        out = os.path.join(a.out_dir, event + ".jpg")
        time.sleep(rng.uniform(0, a.gap_max_s))
        t0 = time.monotonic()
        result = client.publish(a.path, event_id=event, meta={"task": "comp"})
        t1 = time.monotonic()
        if result.duplicate or len(result.job_ids) != 1 or result.warnings:
            sys.exit("publish %s: unexpected ack %r" % (event, result))
        if a.nudge:
            client.events(event_id=event)
        deadline = t1 + a.timeout
        while not os.path.exists(out):
            if time.monotonic() > deadline:
                status = client.status(result.job_ids[0])
                sys.exit("no thumbnail %s %g s after the ack (job %d %s: %s)"
                         % (out, a.timeout, result.job_ids[0], status.state, status.last_error))
            time.sleep(0.0005)
        t2 = time.monotonic()
        # Not timed: let the job finish (its result reported) before the next publish.
        client.wait(result.job_ids[0], timeout=a.timeout, check=True)
        return (t1 - t0) * 1000, (t2 - t1) * 1000

    for i in range(a.warmup):
        ack, thumb = one("warm%d" % i)
        log("warm-up %d: ack %.1f ms, ack -> thumbnail %.1f ms" % (i + 1, ack, thumb))
    acks, thumbs = [], []
    for i in range(a.count):
        ack, thumb = one(str(i))
        acks.append(ack)
        thumbs.append(thumb)
    log("ack -> thumbnail (ms): " + " ".join("%.0f" % t for t in thumbs))
    kv("latency_count", a.count)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        kv("latency_%s_ms" % name, percentile(thumbs, q))
    kv("latency_median_ms", statistics.median(thumbs))
    kv("latency_min_ms", min(thumbs))
    kv("latency_max_ms", max(thumbs))
    kv("latency_ack_median_ms", statistics.median(acks))
    kv("latency_ack_p99_ms", percentile(acks, 0.99))
    total = [x + y for x, y in zip(acks, thumbs)]
    kv("latency_total_median_ms", statistics.median(total))
    kv("latency_total_p99_ms", percentile(total, 0.99))
    kv("latency_runs_ms", ",".join("%.1f" % t for t in thumbs))


# -------------------------------------------------------------------------------- intake


def _intake_client(idx, a, prefix, ready, start, results):
    n = a.count // a.clients + (1 if idx < a.count % a.clients else 0)
    base = (idx + 1) << 40
    payloads = []
    for i in range(n):
        request = pb.ClientRequest()
        request.version = PROTOCOL_VERSION
        request.request_id = base | (i + 1)
        body = request.publish
        body.path = a.path
        body.event_id = "%s-%d-%d" % (prefix, idx, i)
        body.source = "bench"
        payloads.append(request.SerializeToString())
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(a.broker)
    # One untimed round trip, so the connection is up before the start signal.
    warm = pb.ClientRequest()
    warm.version = PROTOCOL_VERSION
    warm.request_id = base
    warm.events.limit = 1
    sock.send(warm.SerializeToString())
    if not sock.poll(30000):
        results.put((idx, "no reply to the warm-up request"))
        return
    sock.recv()
    ready.put(idx)
    start.wait()

    sent_at = [0.0] * n
    ack_ms = [0.0] * n
    reply = pb.ClientReply()
    sent = acked = ok = jobs = dups = 0
    first_error = ""
    now = time.monotonic
    for sent in range(min(a.depth, n)):
        sent_at[sent] = now()
        sock.send(payloads[sent])
    sent = min(a.depth, n)
    while acked < n:
        if not sock.poll(30000):
            results.put((idx, "%d of %d publishes unanswered after 30 s" % (n - acked, n)))
            return
        reply.ParseFromString(sock.recv())
        t = now()
        i = (reply.request_id & ((1 << 40) - 1)) - 1
        if reply.request_id >> 40 != idx + 1 or not 0 <= i < n:
            results.put((idx, "reply to an unknown request %d" % reply.request_id))
            return
        ack_ms[i] = (t - sent_at[i]) * 1000
        acked += 1
        if reply.ok:
            ok += 1
            jobs += len(reply.publish.job_ids)
            dups += reply.publish.duplicate
        elif not first_error:
            first_error = "%s: %s" % (reply.error_code, reply.error)
        if sent < n:
            sent_at[sent] = now()
            sock.send(payloads[sent])
            sent += 1
    end = now()
    sock.close()
    ctx.term()
    results.put((idx, dict(n=n, ok=ok, jobs=jobs, dups=dups, error=first_error, end=end,
                           acks=ack_ms)))


def cmd_intake(a):
    prefix = "%s-%s" % (a.prefix, secrets.token_hex(4))
    ready, results, start = mp.Queue(), mp.Queue(), mp.Event()
    procs = [mp.Process(target=_intake_client, args=(i, a, prefix, ready, start, results))
             for i in range(a.clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    t0 = time.monotonic()
    start.set()
    got = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    bad = [r for _, r in got if isinstance(r, str)]
    if bad:
        sys.exit("intake: " + "; ".join(bad))
    stats = [r for _, r in got]
    n = sum(s["n"] for s in stats)
    ok = sum(s["ok"] for s in stats)
    jobs = sum(s["jobs"] for s in stats)
    dups = sum(s["dups"] for s in stats)
    errors = [s["error"] for s in stats if s["error"]]
    wall = max(s["end"] for s in stats) - t0
    acks = [x for s in stats for x in s["acks"]]
    if ok != n:
        sys.exit("intake: %d of %d publishes refused (%s)" % (n - ok, n, errors[0]))
    if dups:
        sys.exit("intake: %d acks said duplicate" % dups)
    if a.expect_jobs is not None and jobs != a.expect_jobs * n:
        sys.exit("intake: %d jobs created for %d publishes, expected %d each"
                 % (jobs, n, a.expect_jobs))
    kv("count", n)
    kv("clients", a.clients)
    kv("depth", a.depth)
    kv("wall_s", wall)
    kv("per_s", n / wall)
    kv("jobs", jobs)
    kv("ack_p50_ms", percentile(acks, 0.5))
    kv("ack_p99_ms", percentile(acks, 0.99))


# -------------------------------------------------------------------------------- peers


def cmd_echo(a):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.bind(a.endpoint)
    request = pb.ClientRequest()
    while True:
        frames = sock.recv_multipart()
        request.ParseFromString(frames[-1])
        reply = pb.ClientReply()
        reply.request_id = request.request_id
        reply.ok = True
        reply.publish.event_id = request.publish.event_id
        sock.send_multipart([frames[0], reply.SerializeToString()])


def cmd_sqlite(a):
    with open(a.schema) as f:
        schema = f.read()
    db = sqlite3.connect(a.db, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    info = pb.EventInfo(event_id="x" * 40, path=a.path, source="bench").SerializeToString()
    t0 = time.monotonic()
    for first in range(0, a.count, a.batch):
        db.execute("BEGIN")
        for i in range(first, min(first + a.batch, a.count)):
            db.execute("INSERT INTO events (event_id, received_unix_ms, info) VALUES (?, ?, ?)",
                       ("ev-%d" % i, int(time.time() * 1000), info))
        db.execute("COMMIT")
    wall = time.monotonic() - t0
    db.close()
    kv("count", a.count)
    kv("per_s", a.count / wall)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--broker", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--gap-max-s", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--nudge", action="store_true")
    p = sub.add_parser("intake")
    p.add_argument("--broker", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--depth", type=int, default=64)
    p.add_argument("--prefix", default="in")
    p.add_argument("--expect-jobs", type=int)
    p = sub.add_parser("echo")
    p.add_argument("--endpoint", required=True)
    p = sub.add_parser("sqlite")
    p.add_argument("--db", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--path", default="/show/sh010/comp/sh010_comp_v003.####.exr")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1)
    a = parser.parse_args()
    {"latency": cmd_latency, "intake": cmd_intake, "echo": cmd_echo, "sqlite": cmd_sqlite}[a.cmd](a)


if __name__ == "__main__":
    main()
