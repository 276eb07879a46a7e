"""The Python client against the real farmhandd, and against a scripted fake
broker for what a real one does not do on demand (drop a request, answer garbage).
"""

import builtins
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import zmq

import farmhand
from farmhand import farmhand_pb2 as pb

from conftest import BEACHBALL, REPO, image_size

EXAMPLE = REPO / "python" / "examples" / "publish_hook.py"


# ---------------------------------------------------------------- jobs on a real broker


def test_a_noop_job_runs_and_wait_returns_its_final_status(client):
    job = client.submit("noop", tasks=5)
    assert isinstance(job, int) and job > 0
    assert job.task_count == 5 and job.duplicate is False

    status = client.wait(job, timeout=60)
    assert status.state == "succeeded" and status.succeeded and status.final
    assert status.id == job and status.kind == "noop"
    assert status.task_count == 5
    assert status.counts.get("succeeded") == 5
    assert status.progress == 1.0


def test_a_command_job_reports_its_spec_in_status_and_its_output_in_logs(client):
    job = client.submit(
        "command",
        frames="1-10",
        chunk=3,
        command="echo_frame",
        name="echo ten",
        priority=7,
        labels={"shot": "sh010", "version": 3},
        max_attempts=4,
        timeout_s=60,
    )
    status = client.wait(job, timeout=60)
    assert status.state == "succeeded", status
    assert status.kind == "command"
    assert status.name == "echo ten"
    assert status.frames == "1-10"
    assert status.chunk == 3
    assert status.task_count == 4  # 1-3, 4-6, 7-9, 10
    assert status.priority == 7
    assert status.labels == {"shot": "sh010", "version": "3"}
    assert status.max_attempts == 4
    assert status.timeout_s == 60
    assert status.submitted_unix_ms > 0
    assert status.to_dict()["labels"]["shot"] == "sh010"

    page = client.status(job, tasks=True)
    assert [t.frames for t in page.tasks] == ["1-3", "4-6", "7-9", "10"]
    assert all(t.state == "succeeded" for t in page.tasks)

    logs = client.logs(job, task=0)
    assert logs and b"frame 1" in logs[0].text and b"frame 3" in logs[0].text


def test_frame_sets_can_be_ranges_and_lists(client):
    stepped = client.submit("noop", frames=range(1, 11, 2))
    listed = client.submit("noop", frames=[3, 5, 8], chunk=2)
    assert client.status(stepped).frames in ("1-9x2", "1,3,5,7,9")
    assert client.status(stepped).task_count == 5
    assert client.status(listed).task_count == 2


def test_a_failing_job_ends_failed_with_its_last_error(client):
    job = client.submit("command", frames="1", command="fail", max_attempts=1)
    status = client.wait(job, timeout=60)
    assert status.state == "failed"
    assert status.last_error, status
    assert "\n" not in status.last_error

    with pytest.raises(farmhand.JobFailed) as failed:
        client.wait(job, timeout=60, check=True)
    assert str(failed.value).startswith("job %d failed" % job)
    assert failed.value.status.state == "failed"

    retried = client.retry(job)
    assert retried.job_id == job and retried.tasks_changed == 1
    assert client.wait(job, timeout=60).state == "failed"


def test_pause_resume_and_cancel_a_job_no_worker_can_run(client):
    # No worker has this pool, so the job stays queued until we act on it.
    job = client.submit("noop", tasks=3, pool="nowhere")
    assert client.status(job).state == "queued"
    assert client.pause(job).state == "paused"
    assert client.status(job).state == "paused"
    assert client.resume(job).state == "queued"
    cancelled = client.cancel(job)
    assert cancelled.state == "cancelled" and cancelled.tasks_changed == 3
    assert client.wait(job, timeout=10).state == "cancelled"


def test_wait_raises_farmhand_timeout_error_while_the_job_runs(client):
    job = client.submit("command", frames="1", command="sleep", params={"seconds": 30})
    started = time.monotonic()
    with pytest.raises(farmhand.TimeoutError) as timed_out:
        client.wait(job, timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert isinstance(timed_out.value, builtins.TimeoutError)
    assert timed_out.value.code == "timeout"
    assert str(timed_out.value).startswith("job %d not finished within 0.3 s" % job)
    assert timed_out.value.status.state in ("queued", "running")
    client.cancel(job)
    assert client.wait(job, timeout=30).state == "cancelled"


def test_a_held_status_answers_when_the_job_changes_or_the_hold_ends(client):
    job = client.submit("noop", tasks=2, pool="nowhere")  # nothing runs it
    first = client.status(job)
    assert first.version != 0
    started = time.monotonic()
    unchanged = client.status(job, seen_version=first.version, hold=0.3)
    assert time.monotonic() - started >= 0.3
    assert unchanged.version == first.version and unchanged.state == "queued"

    # A pause from another thread ends the hold with the change.
    pauser = threading.Thread(target=lambda: farmhand.Client(client.broker).pause(job))
    pauser.start()
    try:
        changed = client.status(job, seen_version=first.version, hold=30)
    finally:
        pauser.join()
    assert changed.state == "paused" and changed.version != first.version
    with pytest.raises(farmhand.InvalidArgument):
        client.status(job, seen_version=changed.version, hold=61)
    client.cancel(job)


def test_an_idempotency_key_returns_the_first_job(client):
    first = client.submit("noop", tasks=1, idempotency_key="py-key-1")
    again = client.submit("noop", tasks=1, idempotency_key="py-key-1")
    assert again == first
    assert first.duplicate is False and again.duplicate is True


def test_jobs_lists_and_filters_by_state(client):
    done = client.submit("noop", tasks=1)
    client.wait(done, timeout=60)
    waiting = client.submit("noop", tasks=1, pool="nowhere")
    try:
        ids = {j.id for j in client.jobs()}
        assert {done, waiting} <= ids
        succeeded = client.jobs(state="succeeded")
        assert done in {j.id for j in succeeded}
        assert all(j.state == "succeeded" for j in succeeded)
        assert waiting in {j.id for j in client.jobs(state="queued")}
        assert len(client.jobs(limit=1)) == 1
    finally:
        client.cancel(waiting)
    with pytest.raises(farmhand.InvalidArgument, match="unknown job state 'bogus'"):
        client.jobs(state="bogus")


def test_workers_lists_the_local_workers(client):
    workers = {w.name: w for w in client.workers()}
    assert {"local-1", "local-2"} <= set(workers)
    for name in ("local-1", "local-2"):
        assert workers[name].alive
        assert workers[name].slots == 2
        assert workers[name].pid > 0
        assert workers[name].cores >= 1
        assert workers[name].memory_bytes > 0
        assert workers[name].isolation.startswith(("cgroup v2 (", "process group ("))
        assert workers[name].to_dict()["isolation"] == workers[name].isolation


def test_health_of_a_serving_broker_is_healthy_with_every_state_counted(client):
    health = client.health()
    assert health.healthy and health.store_error == ""
    assert set(health.jobs) == set(farmhand.JOB_STATES)
    assert set(health.tasks) == set(farmhand.TASK_STATES)
    assert health.workers_alive >= 2
    assert health.to_dict()["healthy"] is True


def test_a_job_for_a_pool_no_live_worker_serves_says_why_it_waits(client):
    why = "no live worker serves pool 'nowhere' now; the job waits until one joins"
    job = client.submit("noop", tasks=1, pool="nowhere")
    assert job.warnings == [why]
    assert client.status(job).waiting_reason == why
    client.cancel(job)


def test_a_thumbnail_of_the_beachball_sequence_is_a_jpeg_of_the_fitted_size(cluster, client):
    if not Path(str(BEACHBALL).replace("####", "0001")).exists():
        pytest.fail("test data missing: %s" % BEACHBALL)
    out = cluster.path("thumbs") / "beachball.jpg"
    job = client.submit("thumbnail", input=str(BEACHBALL), output=out, size=256, frame="first")
    status = client.wait(job, timeout=120)
    assert status.state == "succeeded", status
    # 2048x1556 displayed, 256 wide: 194.5 rows, rounded.
    assert image_size(out) in ("256x195", "256x194")
    with open(out, "rb") as f:
        assert f.read(3) == b"\xff\xd8\xff"  # JPEG


# ---------------------------------------------------------------- errors from a real broker


def test_an_unknown_job_is_not_found_with_the_brokers_reason(client):
    with pytest.raises(farmhand.NotFound) as error:
        client.status(987654321)
    assert str(error.value) == "unknown job 987654321"
    assert error.value.code == "not_found"
    assert isinstance(error.value, farmhand.FarmhandError)
    assert isinstance(error.value, LookupError)
    with pytest.raises(farmhand.NotFound, match="unknown job 987654321"):
        client.cancel(987654321)


def test_refused_submits_raise_the_brokers_one_line_reason_and_code(cluster, client):
    beach = str(BEACHBALL)
    cases = [
        (farmhand.InvalidArgument, "seconds",
         dict(kind="command", frames="1", command="sleep", params={"seconds": "soon"})),
        (farmhand.InvalidArgument, "unknown command template 'nope'",
         dict(kind="command", frames="1", command="nope")),
        (farmhand.InvalidArgument, "unknown job kind 'sculpt'", dict(kind="sculpt", frames="1")),
        (farmhand.InvalidArgument, "", dict(kind="noop", frames="1-x")),
        (farmhand.InvalidArgument, "unknown codec",
         dict(kind="transcode", input=beach, output=cluster.path("m.mov"), codec="x264")),
        (farmhand.NotFound, "missing frame 99",
         dict(kind="thumbnail", input=beach, output=cluster.path("t.jpg"), frame=99)),
        (farmhand.NotFound, "unknown job 987654321",
         dict(kind="noop", tasks=1, after=987654321)),
    ]
    for cls, reason, args in cases:
        kind = args.pop("kind")
        with pytest.raises(farmhand.FarmhandError) as error:
            client.submit(kind, **args)
        assert type(error.value) is cls, (kind, args, repr(error.value))
        assert reason in str(error.value), (kind, args, str(error.value))
        assert error.value.code == cls.code
        assert "\n" not in str(error.value) and str(error.value)


def test_client_side_argument_errors_are_invalid_arguments(client):
    with pytest.raises(farmhand.InvalidArgument, match="need input= and output="):
        client.submit("thumbnail", input="/tmp/x.exr")
    with pytest.raises(farmhand.InvalidArgument, match="command jobs need command="):
        client.submit("command", frames="1")
    with pytest.raises(farmhand.InvalidArgument, match="noop jobs need tasks= or frames="):
        client.submit("noop")
    with pytest.raises(farmhand.InvalidArgument, match="size= is an option of media jobs"):
        client.submit("command", frames="1", command="true", size=256)
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError too
        farmhand.Client("tcp://127.0.0.1:7600", timeout=0)


# ---------------------------------------------------------------- no broker


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="fhpy", dir="/tmp")
    yield Path(d)
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def free_tcp_endpoint():
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(linger=0)
    return "tcp://127.0.0.1:%d" % port


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_broker_unreachable_is_raised_within_the_timeout(short_dir, transport):
    endpoint = free_tcp_endpoint() if transport == "tcp" else "ipc://%s/none.ipc" % short_dir
    client = farmhand.Client(endpoint, timeout=0.5)
    calls = [
        lambda: client.status(1),
        lambda: client.submit("noop", tasks=1),
        lambda: client.publish("/show/sh010.####.exr", event_id="x"),
        lambda: client.cancel(1),
        lambda: client.workers(),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(farmhand.BrokerUnreachable) as error:
            call()
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 1.5, elapsed
        assert str(error.value) == "broker unreachable at %s (no reply within 0.5 s)" % endpoint
        assert error.value.code == "unavailable"
        assert isinstance(error.value, (farmhand.Unavailable, ConnectionError))


def test_a_malformed_endpoint_is_an_invalid_argument():
    with pytest.raises(farmhand.InvalidArgument, match="cannot reach broker at nowhere"):
        farmhand.Client("nowhere", timeout=0.5).status(1)


def test_wait_gives_up_when_the_broker_stays_silent(short_dir):
    client = farmhand.Client("ipc://%s/none.ipc" % short_dir, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(farmhand.BrokerUnreachable):
        client.wait(1)
    assert time.monotonic() - started < 2.0


def test_the_example_hook_exits_with_one_line_when_the_broker_is_unreachable(short_dir):
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(BEACHBALL), "--project", "show", "--shot", "sh010",
         "--task", "comp", "--version", "3", "--broker", "ipc://%s/none.ipc" % short_dir,
         "--timeout", "0.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 3, done
    assert done.stdout == ""
    expected = r"publish_hook: broker unreachable at ipc://\S+ \(no reply within 0\.5 s\)\n"
    assert re.fullmatch(expected, done.stderr), done.stderr


# ---------------------------------------------------------------- a scripted fake broker


class FakeBroker:
    """A ROUTER on `endpoint` that records each request (routing id, raw bytes,
    parsed) and answers with `handler(n, request)`: bytes to send, or None to
    stay silent."""

    def __init__(self, endpoint, handler):
        self.endpoint = endpoint
        self.handler = handler
        self.received = []
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if not self._sock.poll(20, zmq.POLLIN):
                continue
            identity, payload = self._sock.recv_multipart()
            request = pb.ClientRequest.FromString(payload)
            self.received.append((identity, payload, request))
            answer = self.handler(len(self.received), request)
            if answer is not None:
                self._sock.send_multipart([identity, answer])

    def close(self):
        self._stop.set()
        self._thread.join()
        self._sock.close(linger=0)
        self._ctx.term()


@pytest.fixture
def fake(short_dir):
    brokers = []

    def start(handler):
        broker = FakeBroker("ipc://%s/fake.ipc" % short_dir, handler)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.close()


def reply_to(request, **fields):
    reply = pb.ClientReply(request_id=request.request_id, ok=True)
    for name, value in fields.items():
        getattr(reply, name).CopyFrom(value)
    return reply.SerializeToString()


def test_a_submit_resent_after_a_timeout_is_the_same_request_on_a_fresh_socket(fake):
    def handler(n, request):
        if n == 1:
            return None  # as if the broker took it in and restarted
        return reply_to(request, submit=pb.SubmitReply(job_id=42, duplicate=True, task_count=1))

    broker = fake(handler)
    client = farmhand.Client(broker.endpoint, timeout=3.0)
    started = time.monotonic()
    job = client.submit("noop", tasks=1)
    elapsed = time.monotonic() - started
    assert job == 42
    # The broker saw our own first try: for the caller the job is still new.
    assert job.duplicate is False
    assert 1.4 <= elapsed < 2.5, elapsed  # resent after half the timeout
    assert len(broker.received) == 2
    (id1, raw1, first), (id2, raw2, second) = broker.received
    assert raw1 == raw2  # the same request id and idempotency key, byte for byte
    assert id1 != id2  # a fresh DEALER per try
    assert first.version == farmhand.PROTOCOL_VERSION and first.request_id != 0
    assert re.fullmatch(r"[0-9a-f]{32}", first.submit.spec.idempotency_key)


def test_a_publish_resent_after_a_timeout_keeps_its_event_id(fake):
    def handler(n, request):
        if n == 1:
            return None
        return reply_to(request, publish=pb.PublishReply(
            event_id=request.publish.event_id, duplicate=True, job_ids=[5, 6], rules=["review"]))

    broker = fake(handler)
    client = farmhand.Client(broker.endpoint, timeout=2.0)
    result = client.publish("/show/sh010/comp.####.exr", meta={"shot": "sh010", "version": 3})
    assert result.job_ids == [5, 6] and result.rules == ["review"]
    assert result.duplicate is False  # our own random id: only our first try saw it
    (_, raw1, first), (_, raw2, second) = broker.received
    assert raw1 == raw2
    assert re.fullmatch(r"[0-9a-f]{32}", first.publish.event_id)
    assert first.publish.event_id == result.event_id
    assert dict(first.publish.meta) == {"shot": "sh010", "version": "3"}
    assert first.publish.source == "python"


def test_a_repeated_event_id_of_the_caller_is_reported_as_duplicate(fake):
    broker = fake(lambda n, request: reply_to(request, publish=pb.PublishReply(
        event_id=request.publish.event_id, duplicate=True, job_ids=[5])))
    result = farmhand.Client(broker.endpoint, timeout=2.0).publish(
        "comp.####.exr", event_id="show/sh010/comp/v003")
    assert result.duplicate is True and result.event_id == "show/sh010/comp/v003"
    # Relative paths go over the wire absolute.
    assert broker.received[0][2].publish.path.startswith("/")


def test_a_job_action_is_resent_byte_for_byte_under_one_idempotency_key(fake):
    # The broker acts once per key, so an unanswered action may be asked again.
    broker = fake(lambda n, request: None)
    client = farmhand.Client(broker.endpoint, timeout=2.5)
    with pytest.raises(farmhand.BrokerUnreachable):
        client.retry(7)
    assert len(broker.received) >= 2
    keys = {request.action.idempotency_key for _, _, request in broker.received}
    assert len(keys) == 1 and len(keys.pop()) == 32
    assert len({raw for _, raw, _ in broker.received}) == 1


@pytest.mark.parametrize(
    "code, cls",
    [
        ("invalid_argument", farmhand.InvalidArgument),
        ("not_found", farmhand.NotFound),
        ("corrupt", farmhand.Corrupt),
        ("io", farmhand.IoError),
        ("timeout", farmhand.TimeoutError),
        ("crashed", farmhand.Crashed),
        ("cancelled", farmhand.Cancelled),
        ("unavailable", farmhand.Unavailable),
        ("internal", farmhand.Internal),
        ("from_a_newer_broker", farmhand.Internal),
    ],
)
def test_each_error_code_becomes_its_exception(fake, code, cls):
    def handler(n, request):
        return pb.ClientReply(request_id=request.request_id, ok=False, error_code=code,
                              error="decoder crashed (SIGABRT) reading sh010.1012.exr"
                              ).SerializeToString()

    broker = fake(handler)
    with pytest.raises(cls) as error:
        farmhand.Client(broker.endpoint, timeout=2.0).status(1)
    assert type(error.value) is cls
    assert str(error.value) == "decoder crashed (SIGABRT) reading sh010.1012.exr"
    assert error.value.code == cls.code
    assert len(broker.received) == 1  # an answer, even a refusal, is not resent


@pytest.mark.parametrize(
    "answer, reason",
    [
        (lambda r: b"\xff\xff\xff garbage", "malformed reply from broker"),
        (lambda r: pb.ClientReply(request_id=r.request_id + 1, ok=True).SerializeToString(),
         "broker answered request"),
        (lambda r: reply_to(r, list=pb.ListReply()),
         "unexpected reply from broker (list body for a status request)"),
    ],
)
def test_a_reply_the_client_cannot_use_is_corrupt(fake, answer, reason):
    broker = fake(lambda n, request: answer(request))
    with pytest.raises(farmhand.Corrupt) as error:
        farmhand.Client(broker.endpoint, timeout=2.0).status(1)
    assert reason in str(error.value)


def test_the_client_speaks_the_brokers_protocol_version():
    wire_h = (REPO / "common" / "wire.h").read_text()
    version = re.search(r"kProtocolVersion = (\d+)", wire_h).group(1)
    assert farmhand.PROTOCOL_VERSION == int(version)


def test_a_limit_set_at_runtime_holds_a_job_until_it_is_raised(client):
    limits = {limit.name: limit for limit in client.set_limit("pylic", 0)}
    assert limits["pylic"].capacity == 0 and limits["pylic"].in_use == 0
    job = client.submit("noop", tasks=2, limits=["pylic"], max_running=1)
    assert client.status(job).waiting_reason == "waiting for limit 'pylic': 0 of 0 in use"
    assert {l.name: l for l in client.limits()}["pylic"].waiting_jobs == 1
    client.set_limit("pylic", 1)
    assert client.wait(job).state == "succeeded"
    assert {l.name: l for l in client.limits()}["pylic"].in_use == 0
    with pytest.raises(farmhand.InvalidArgument, match="unknown limit 'nolic'"):
        client.submit("noop", tasks=1, limits="nolic")


def test_a_disabled_worker_says_so_and_takes_tasks_again_once_enabled(client):
    name = client.workers()[0].name
    workers = {w.name: w for w in client.disable_worker(name, reason="bad RAM")}
    assert workers[name].control == "disabled" and workers[name].control_reason == "bad RAM"
    drained = {w.name: w for w in client.drain_worker(name, wait=True)}
    assert drained[name].control == "draining" and not drained[name].running
    workers = {w.name: w for w in client.enable_worker(name)}
    assert workers[name].control == "enabled" and workers[name].control_reason == ""
    with pytest.raises(farmhand.NotFound, match="unknown worker 'nobody'"):
        client.disable_worker("nobody")


def test_set_job_changes_a_queued_job_and_unblock_names_what_it_cleared(client):
    names = [w.name for w in client.workers()]
    for name in names:
        client.disable_worker(name)
    try:
        job = client.submit("noop", tasks=2)
        client.set_job(job, priority=7, max_running=1, timeout=30)
        status = client.status(job)
        assert status.priority == 7 and status.timeout_s == 30 and status.blocked == []
        with pytest.raises(farmhand.InvalidArgument, match="unknown limit 'nolic'"):
            client.set_job(job, limits=["nolic"])
        with pytest.raises(TypeError):
            client.set_job(job, limits="nolic")
        with pytest.raises(farmhand.NotFound, match="worker 'w9' is not blocked for job"):
            client.unblock(job, "w9")
        assert client.unblock(job).tasks_changed == 0
    finally:
        for name in names:
            client.enable_worker(name)
    assert client.wait(job).state == "succeeded"
    with pytest.raises(farmhand.InvalidArgument, match="already finished"):
        client.set_job(job, priority=1)


def test_jobs_record_who_submitted_them_and_filter_by_it(client):
    tag = farmhand.random_key()[:8]
    first = client.submit("noop", tasks=1, project="show-" + tag, labels={"shot": "sh010"},
                          name="comp " + tag)
    second = client.submit("noop", tasks=1, labels={"project": "other-" + tag, "shot": "sh020"},
                           name="lighting " + tag)
    job = client.status(first)
    assert job.submitted_by and job.submitted_from and job.project == "show-" + tag
    assert client.status(second).project == "other-" + tag  # from the label
    assert [j.id for j in client.jobs(project="show-" + tag)] == [first]
    assert [j.id for j in client.jobs(name="LIGHTING " + tag)] == [second]
    assert [j.id for j in client.jobs(labels={"shot": "sh020"}, name=tag)] == [second]
    mine = client.jobs(user=job.submitted_by, name=tag, since=3600)
    assert [j.id for j in mine] == [first, second]
    assert [j.id for j in client.jobs(name=tag, limit=1)] == [second]
    assert [j.id for j in client.jobs(name=tag, limit=1, offset=1)] == [first]
    assert client.jobs(name=tag, user="nobody-" + tag) == []


def test_what_each_attempt_used_is_in_status_logs_and_the_job_totals(client):
    job = client.submit("command", frames="1-2", chunk=1, command="echo_frame")
    assert client.wait(job, timeout=60).state == "succeeded"
    page = client.status(job, tasks=True)
    assert len(page.tasks) == 2
    for task in page.tasks:
        stats = task.last_attempt
        assert isinstance(stats, farmhand.AttemptStats), task
        assert stats.exit_code == 0 and stats.exit_signal is None
        assert stats.wall_s > 0 and stats.cpu_s >= 0 and stats.peak_rss_bytes > 0
    assert isinstance(page.usage, farmhand.JobUsage)
    assert page.usage.attempts == 2
    assert page.usage.peak_rss_bytes == max(t.last_attempt.peak_rss_bytes for t in page.tasks)
    assert page.usage.cpu_hours == pytest.approx(page.usage.cpu_s / 3600)
    assert page.to_dict()["usage"]["attempts"] == 2
    logs = client.logs(job)
    assert [log.stats.exit_code for log in logs] == [0, 0]

    failing = client.submit("command", frames="1", command="fail", max_attempts=1)
    assert client.wait(failing, timeout=60).state == "failed"
    (log,) = client.logs(failing)
    assert log.stats.exit_code == 1 and log.stats.exit_signal is None
    assert client.status(failing, tasks=True).tasks[0].last_attempt.exit_code == 1


def test_status_says_when_the_job_and_each_task_ran_and_media_tasks_log_what_they_did(
        cluster, client):
    if not Path(str(BEACHBALL).replace("####", "0001")).exists():
        pytest.fail("test data missing: %s" % BEACHBALL)
    out = cluster.path("thumbs") / "when.jpg"
    job = client.submit("thumbnail", input=str(BEACHBALL), output=out, size=64, frame="first")
    assert client.wait(job, timeout=120).state == "succeeded"
    page = client.status(job, tasks=True)
    assert page.submitted_unix_ms <= page.started_unix_ms <= page.finished_unix_ms
    assert page.elapsed_s == pytest.approx((page.finished_unix_ms - page.started_unix_ms) / 1000)
    assert page.queued_s >= 0
    (task,) = page.tasks
    assert task.worker in {w.name for w in client.workers()}, task
    assert page.started_unix_ms <= task.started_unix_ms <= page.finished_unix_ms
    assert task.elapsed_s > 0
    assert page.to_dict()["tasks"][0]["started_unix_ms"] == task.started_unix_ms
    (log,) = client.logs(job)
    assert b"wrote " + str(out).encode() + b": jpeg 64x" in log.text, log.text
    assert b"singlepart.0001.exr: 2048x1556" in log.text, log.text


def test_unknown_attempt_use_is_none_not_zero():
    # What an older worker's result or an older broker's reply looks like.
    task = farmhand.TaskInfo.from_pb(pb.TaskInfo(index=3, state=pb.TASK_SUCCEEDED))
    assert task.last_attempt is None
    log = farmhand.TaskLog.from_pb(pb.TaskLog(task=3, attempt=1))
    assert log.stats is None
    job = farmhand.Job.from_pb(pb.JobSummary(id=1, kind="command"))
    assert job.usage is None

    killed = pb.AttemptStats(wall_s=2.0, cpu_user_s=1.0, cpu_system_s=0.5, exit_signal="SIGKILL")
    stats = farmhand.TaskLog.from_pb(pb.TaskLog(task=3, attempt=2, stats=killed)).stats
    assert stats.exit_signal == "SIGKILL" and stats.exit_code is None
    assert stats.cpu_s == 1.5 and stats.peak_rss_bytes is None
    exited = farmhand.TaskLog.from_pb(pb.TaskLog(task=3, attempt=3, stats=pb.AttemptStats(
        exit_code=0))).stats
    assert exited.exit_code == 0 and exited.exit_signal is None


def test_sizes_are_taken_as_the_cli_takes_them():
    assert farmhand.byte_size("8G") == 8 << 30
    assert farmhand.byte_size("512M") == 512 << 20
    assert farmhand.byte_size("1.5T") == 3 << 39
    assert farmhand.byte_size("8GiB") == 8 << 30
    assert farmhand.byte_size(4096) == 4096
    for bad in ("G", "12Q", "-1G", True):
        with pytest.raises(farmhand.InvalidArgument, match="size"):
            farmhand.byte_size(bad)


def test_requests_show_in_status_and_a_request_no_worker_meets_says_so(client):
    job = client.submit("noop", tasks=1, cores=1, memory="1G", memory_retry_factor=1.5,
                        project="pyshow")
    status = client.wait(job)
    assert (status.cores, status.memory, status.memory_retry_factor) == (1, 1 << 30, 1.5)
    shares = {s.project: s for s in client.shares()}
    assert all(s.weight == 1 for s in shares.values())  # no shares in this config
    # The local workers report their cores: ask for more than any has.
    most = max(w.cores for w in client.workers())
    assert most > 0, "workers report the cores they have"
    big = client.submit("noop", tasks=1, cores=most + 1)
    assert "no worker can ever run a task of this job" in client.status(big).waiting_reason
    client.set_job(big, cores=1, memory="64M")
    assert client.wait(big).state == "succeeded"
    assert client.status(big).memory == 64 << 20
    with pytest.raises(farmhand.InvalidArgument, match="memory retry factor"):
        client.submit("noop", tasks=1, memory_retry_factor=0.5)


def test_gpus_and_adaptive_chunks_go_through_the_client(client):
    # The local workers have no GPU (none is listed by a driver here, or they
    # report what they found): a task asking for more than any has says so.
    most = max(w.gpus for w in client.workers())
    job = client.submit("noop", tasks=1, gpus=most + 1)
    status = client.status(job)
    assert status.gpus == most + 1
    assert "GPU" in status.waiting_reason
    client.set_job(job, gpus=0)
    assert client.wait(job).state == "succeeded"
    assert client.status(job).gpus == 0
    # Chunks that adapt: balanced at first (1-12 by 5 is 4, 4, 4), and shown.
    chunked = client.submit("noop", frames="1-12", chunk=5, chunk_target_s=30)
    done = client.wait(chunked)
    assert done.state == "succeeded"
    assert done.chunk_target_s == 30
    assert done.chunk_now >= 1
    assert done.task_count <= 3


def test_a_web_movie_with_sound_goes_through_the_client(cluster, client, tmp_path, monkeypatch):
    if not Path(str(BEACHBALL).replace("####", "0001")).exists():
        pytest.fail("test data missing: %s" % BEACHBALL)
    sound = tmp_path / "tone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", str(sound)], check=True)
    monkeypatch.chdir(tmp_path)  # a relative sound path is made absolute, as the CLI does
    out = cluster.path("review") / "web.mp4"
    job = client.submit("transcode", input=str(BEACHBALL), output=out, codec="av1",
                        audio="tone.wav", audio_offset=-1)
    assert client.wait(job, timeout=300).state == "succeeded"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
         str(out)], check=True, capture_output=True, text=True).stdout.split()
    assert probe == ["av1", "aac"], probe
    with pytest.raises(farmhand.InvalidArgument, match="use .webm or .mp4"):
        client.submit("transcode", input=str(BEACHBALL), output=cluster.path("x.mov"),
                      codec="vp9")
    # Dailies: a slate and burn-ins whose values come in meta=.
    dailies = cluster.path("review") / "dailies.mov"
    job = client.submit("transcode", input=str(BEACHBALL), output=dailies, slate=True,
                        burn_in=["{shot} v{version}", "top-right={timecode}"],
                        meta={"shot": "sh010", "version": 3})
    assert client.wait(job, timeout=300).state == "succeeded"
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(dailies)],
        check=True, capture_output=True, text=True).stdout.split()
    assert frames == ["9"], frames  # the slate and 8 pictures
    with pytest.raises(farmhand.InvalidArgument, match="no value for {shot}"):
        client.submit("transcode", input=str(BEACHBALL), output=dailies, burn_in="{shot}")
    # A movie in two segments on the workers, joined: 64 frames (links to the 8 in turn).
    plates = tmp_path / "plates"
    plates.mkdir()
    for f in range(1, 65):
        source = Path(str(BEACHBALL).replace("####", "%04d" % ((f - 1) % 8 + 1))).resolve()
        (plates / ("p.%04d.exr" % f)).symlink_to(source)
    joined = cluster.path("review") / "joined.mp4"
    job = client.submit("transcode", input=str(plates / "p.####.exr"), output=joined, segments=2)
    assert client.wait(job, timeout=300).state == "succeeded"
    assert client.status(job).task_count == 1  # the join; the segments are the job before it
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(joined)],
        check=True, capture_output=True, text=True).stdout.split()
    assert frames == ["64"], frames
    with pytest.raises(farmhand.InvalidArgument, match="bad --segments"):
        client.submit("transcode", input=str(plates / "p.####.exr"), output=joined, segments=0)
    # A contact sheet of every 4th frame, two cells 100 wide.
    sheet = cluster.path("review") / "sheet.png"
    job = client.submit("contactsheet", input=str(BEACHBALL), output=sheet, every=4, columns=2,
                        size=100, title="sb")
    assert client.wait(job, timeout=120).state == "succeeded"
    size = subprocess.run(["oiiotool", str(sheet), "--echo", "{TOP.width}x{TOP.height}"],
                          check=True, capture_output=True, text=True).stdout.split()
    assert size == ["212x122"], size  # frames 1 and 5: 4 + 2 x (100 + 4); 22 + 4 + (76 + 16 + 4)


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_kill_reruns_a_task_as_a_new_attempt_and_a_repeated_key_acts_once(client):
    job = client.submit("command", frames="1-2", command="sleep", params={"seconds": 30})
    assert _wait_for(lambda: client.status(job).counts.get("running", 0) == 2)
    key = farmhand.client.random_key()
    killed = client.kill(job, tasks=[0], idempotency_key=key)
    assert killed.tasks_changed == 1

    def attempts_of_task_0():
        return client.status(job, tasks=True).tasks[0].attempts

    assert _wait_for(lambda: attempts_of_task_0() == 2), "the killed task never ran again"
    # The same request with the same key (a resend after a lost reply): the
    # first reply, and attempt 2 keeps running.
    again = client.kill(job, tasks=[0], idempotency_key=key)
    assert again.tasks_changed == 1
    assert attempts_of_task_0() == 2
    assert client.status(job, tasks=True).tasks[0].state == "running"
    with pytest.raises(farmhand.InvalidArgument) as reused:
        client.kill(job, tasks="1", idempotency_key=key)
    assert "was used for another request" in str(reused.value)
    with pytest.raises(ValueError):
        client.kill(job)
    assert client.kill(job, state="queued").tasks_changed == 0  # nothing matched: no error
    assert client.cancel(job).state == "cancelled"


def test_skip_retry_and_requeue_select_tasks_and_keep_attempt_numbers(client):
    job = client.submit("command", frames="1-3", command="fail", max_attempts=1)
    assert client.wait(job, timeout=60).state == "failed"
    assert client.retry(job, tasks="1").tasks_changed == 1
    assert client.wait(job, timeout=60).state == "failed"
    skipped = client.skip(job, state="dead")
    assert skipped.tasks_changed == 3 and skipped.state == "succeeded"
    page = client.status(job, tasks=True).tasks
    assert [t.attempts for t in page] == [1, 2, 1]
    assert all(t.error == "skipped (farmhand skip)" for t in page)

    done = client.submit("command", frames="1-2", command="true")
    assert client.wait(done, timeout=60).state == "succeeded"
    with pytest.raises(farmhand.InvalidArgument):
        client.requeue(done, tasks=[7])  # no task 7
    assert client.requeue(done, frames=[2]).tasks_changed == 1
    assert client.wait(done, timeout=60).state == "succeeded"
    assert [t.attempts for t in client.status(done, tasks=True).tasks] == [1, 2]
