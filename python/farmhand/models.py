"""Plain-data views of the broker's replies.

Each is a dataclass built from one protobuf message, with states
as the names the `farmhand` CLI prints ("queued", "running", "succeeded", ...)
and ``to_dict()`` for JSON. They hold copies: nothing refers back to protobuf.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from farmhand import farmhand_pb2 as pb

__all__ = [
    "JOB_STATES",
    "TASK_STATES",
    "FINAL_JOB_STATES",
    "JobId",
    "TaskInfo",
    "AttemptStats",
    "JobUsage",
    "Job",
    "JobStatus",
    "ActionResult",
    "WorkerInfo",
    "TaskLog",
    "PublishResult",
    "Event",
    "Health",
]

# Lifecycle order, as the CLI lists them.
JOB_STATES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")
TASK_STATES = ("waiting", "queued", "running", "succeeded", "failed", "dead", "cancelled")
FINAL_JOB_STATES = frozenset(("succeeded", "failed", "cancelled"))

_JOB_STATE_NAMES = {
    pb.JOB_QUEUED: "queued",
    pb.JOB_RUNNING: "running",
    pb.JOB_PAUSED: "paused",
    pb.JOB_SUCCEEDED: "succeeded",
    pb.JOB_FAILED: "failed",
    pb.JOB_CANCELLED: "cancelled",
}
_TASK_STATE_NAMES = {
    pb.TASK_WAITING: "waiting",
    pb.TASK_QUEUED: "queued",
    pb.TASK_RUNNING: "running",
    pb.TASK_SUCCEEDED: "succeeded",
    pb.TASK_FAILED: "failed",
    pb.TASK_DEAD: "dead",
    pb.TASK_CANCELLED: "cancelled",
}
_JOB_STATE_VALUES = {name: value for value, name in _JOB_STATE_NAMES.items()}
_TASK_STATE_VALUES = {name: value for value, name in _TASK_STATE_NAMES.items()}


def job_state_name(value):
    return _JOB_STATE_NAMES.get(value, "unspecified")


def task_state_name(value):
    return _TASK_STATE_NAMES.get(value, "unspecified")


def job_state_value(name):
    """The JobState enum value of a name such as "running"; KeyError if unknown."""
    return _JOB_STATE_VALUES[name.lower()]


def task_state_value(name):
    return _TASK_STATE_VALUES[name.lower()]


def _task_state_key(key):
    # The broker names counts by state; accept "TASK_RUNNING" as well as "running".
    key = key.lower()
    return key[5:] if key.startswith("task_") else key


class JobId(int):
    """A submitted job's id: an int, plus what the submit reply said about it.

    ``duplicate`` is True when the idempotency key you passed was seen before (the
    id is then the first job's); ``task_count`` is the number of tasks created;
    ``warnings`` are one-line notes on an accepted job that will wait, e.g. "no
    live worker serves pool 'gpu' now; the job waits until one joins".
    """

    duplicate: bool
    task_count: int
    warnings: List[str]

    def __new__(cls, value, duplicate=False, task_count=0, warnings=()):
        self = super().__new__(cls, value)
        self.duplicate = bool(duplicate)
        self.task_count = int(task_count)
        self.warnings = list(warnings)
        return self

    def __repr__(self):
        return int.__repr__(self)


class OpenJdSubmission:
    """What ``Client.submit_openjd`` made: the template's job name and, for each
    step in template order, ``(step_name, JobId)`` in ``steps``; ``jobs`` maps a
    step's name to its JobId. ``duplicate``: the idempotency key you passed was
    seen before (the ids are the first submit's). ``warnings``: one-line notes
    on what was accepted but not matched (a host requirement's maximum, ...).
    """

    def __init__(self, job_name, steps, duplicate=False, warnings=()):
        self.job_name = job_name
        self.steps = list(steps)
        self.jobs = dict(self.steps)
        self.duplicate = bool(duplicate)
        self.warnings = list(warnings)

    def __repr__(self):
        return "OpenJdSubmission(%r, %r)" % (self.job_name, self.steps)


class _Data:
    def to_dict(self):
        return dataclasses.asdict(self)


@dataclass
class AttemptStats(_Data):
    """What one attempt used, as its worker measured it (see the README)."""

    wall_s: float = 0.0
    cpu_user_s: float = 0.0  # every process of the task's process group
    cpu_system_s: float = 0.0
    peak_rss_bytes: Optional[int] = None  # None: unknown
    exit_code: Optional[int] = None  # when its last process exited
    exit_signal: Optional[str] = None  # "SIGKILL" when a signal killed it

    @property
    def cpu_s(self):
        return self.cpu_user_s + self.cpu_system_s

    @classmethod
    def from_pb(cls, msg):
        return cls(
            wall_s=msg.wall_s,
            cpu_user_s=msg.cpu_user_s,
            cpu_system_s=msg.cpu_system_s,
            peak_rss_bytes=msg.peak_rss_bytes or None,
            exit_code=msg.exit_code if msg.HasField("exit_code") else None,
            exit_signal=msg.exit_signal or None,
        )


def _stats_of(msg, name):
    # None when the field is absent: unknown (an older worker or broker).
    return AttemptStats.from_pb(getattr(msg, name)) if msg.HasField(name) else None


@dataclass
class JobUsage(_Data):
    """A job's use over its attempts that reported one."""

    cpu_s: float = 0.0  # user + system
    peak_rss_bytes: int = 0  # the largest attempt's
    attempts: int = 0

    @property
    def cpu_hours(self):
        return self.cpu_s / 3600.0

    @classmethod
    def from_pb(cls, msg):
        return cls(cpu_s=msg.cpu_s, peak_rss_bytes=msg.peak_rss_bytes, attempts=msg.attempts)


@dataclass
class TaskInfo(_Data):
    index: int
    state: str
    frames: str = ""
    attempts: int = 0
    worker: str = ""
    error: str = ""
    running_s: float = 0.0
    job_id: int = 0
    progress_done: int = 0
    progress_total: int = 0
    # In a status(tasks=True) page: the last attempt that reported its use.
    last_attempt: Optional[AttemptStats] = None
    # When its running or last attempt started (0: unknown: it never ran, or a
    # noop task), and how long that attempt ran (so far, while running).
    started_unix_ms: int = 0
    elapsed_s: float = 0.0
    # A running task's own word on what it does (an OpenJD openjd_status line).
    status_message: str = ""

    @classmethod
    def from_pb(cls, msg):
        return cls(
            index=msg.index,
            state=task_state_name(msg.state),
            frames=msg.frames,
            attempts=msg.attempts,
            worker=msg.worker,
            error=msg.error,
            running_s=msg.running_s,
            job_id=msg.job_id,
            progress_done=msg.progress_done,
            progress_total=msg.progress_total,
            last_attempt=_stats_of(msg, "last_attempt"),
            started_unix_ms=msg.started_unix_ms,
            elapsed_s=msg.elapsed_s,
            status_message=msg.status_message,
        )


def _job_fields(msg):
    counts = {}
    for key, value in msg.counts.items():
        name = _task_state_key(key)
        counts[name] = counts.get(name, 0) + value
    return dict(
        id=msg.id,
        name=msg.name,
        kind=msg.kind,
        state=job_state_name(msg.state),
        priority=msg.priority,
        pool=msg.pool,
        frames=msg.frames,
        chunk=msg.chunk,
        task_count=msg.task_count,
        counts=counts,
        submitted_unix_ms=msg.submitted_unix_ms,
        labels=dict(msg.labels),
        max_attempts=msg.max_attempts,
        timeout_s=msg.timeout_s,
        after=list(msg.after),
        after_frames=msg.after_frames,
        lane=msg.lane,
        event_id=msg.event_id,
        submitted_by=msg.submitted_by,
        submitted_from=msg.submitted_from,
        submitted_key=msg.submitted_key,
        project=msg.project,
        finished_unix_ms=msg.finished_unix_ms,
        started_unix_ms=msg.started_unix_ms,
        command=msg.command_template,
        params=dict(msg.params),
        max_running=msg.max_running,
        limits=list(msg.limits),
        usage=JobUsage.from_pb(msg.usage) if msg.HasField("usage") else None,
        cores=msg.cores,
        memory=msg.memory_bytes,
        memory_retry_factor=msg.memory_retry_factor,
        chunk_target_s=msg.chunk_target_s,
        chunk_now=msg.chunk_now,
        gpus=msg.gpus,
        tag_choices=list(msg.tag_choices),
    )


@dataclass
class Job(_Data):
    """One job as `farmhand ls` shows it (JobSummary)."""

    id: int
    name: str
    kind: str
    state: str
    priority: int = 0
    pool: str = ""
    frames: str = ""
    chunk: int = 0
    task_count: int = 0
    counts: Dict[str, int] = field(default_factory=dict)  # task state name -> tasks
    submitted_unix_ms: int = 0
    labels: Dict[str, str] = field(default_factory=dict)
    max_attempts: int = 0
    timeout_s: int = 0
    after: List[int] = field(default_factory=list)
    after_frames: int = 0
    lane: str = ""
    event_id: str = ""  # the publish event that created it, if any
    submitted_by: str = ""  # the user the client named
    submitted_from: str = ""  # the host it was submitted from
    submitted_key: str = ""  # the CURVE key's name, on a secured client port
    project: str = ""
    finished_unix_ms: int = 0  # 0 while not finished
    command: str = ""  # the command template, for command jobs
    params: Dict[str, str] = field(default_factory=dict)
    max_running: int = 0
    limits: List[str] = field(default_factory=list)
    usage: Optional[JobUsage] = None  # None from a broker too old to sum it
    cores: int = 0  # each task's request (0: none)
    memory: int = 0  # bytes each task asks for now (a memory retry raises it; 0: none)
    memory_retry_factor: float = 0.0
    started_unix_ms: int = 0  # when its first task was dispatched; 0: not yet
    chunk_target_s: int = 0  # adaptive chunks: seconds a chunk should take (0: fixed chunks)
    chunk_now: int = 0  # adaptive chunks: the frames the chunks not yet started have now
    gpus: int = 0  # GPUs each task asks for (0: none)
    tag_choices: List[str] = field(default_factory=list)  # tags a worker needs, one of each "a|b"

    @classmethod
    def from_pb(cls, msg):
        return cls(**_job_fields(msg))

    @property
    def elapsed_s(self):
        """How long it has run: from its first task's start until it finished
        (or now); 0.0 before it starts."""
        if not self.started_unix_ms:
            return 0.0
        end = self.finished_unix_ms or int(time.time() * 1000)
        return max(0.0, (end - self.started_unix_ms) / 1000.0)

    @property
    def queued_s(self):
        """How long it waited for its first task to start (until now while it waits)."""
        if not self.submitted_unix_ms:
            return 0.0
        end = self.started_unix_ms or self.finished_unix_ms or int(time.time() * 1000)
        return max(0.0, (end - self.submitted_unix_ms) / 1000.0)

    @property
    def final(self):
        """True once the job is succeeded, failed or cancelled."""
        return self.state in FINAL_JOB_STATES

    @property
    def succeeded(self):
        return self.state == "succeeded"

    @property
    def progress(self):
        """Succeeded tasks over all tasks, 0.0 to 1.0."""
        total = self.task_count or sum(self.counts.values())
        return min(self.counts.get("succeeded", 0), total) / total if total else 0.0


@dataclass
class JobStatus(Job):
    """A job with its running tasks, latest errors and, if asked, a page of tasks."""

    running: List[TaskInfo] = field(default_factory=list)  # at most 100
    last_errors: List[TaskInfo] = field(default_factory=list)  # most recent first
    tasks: List[TaskInfo] = field(default_factory=list)  # the requested page
    # What was seen of the job, fingerprinted by the broker: pass it back as
    # Client.status(seen_version=...) to wait for the next change. 0 from a
    # broker too old to long-poll.
    version: int = 0
    # Why queued tasks are not dispatched, when the broker can tell ("" otherwise).
    waiting_reason: str = ""
    # Workers that take no more of this job's tasks after failing it.
    blocked: List["BlockedWorker"] = field(default_factory=list)

    @classmethod
    def from_pb(cls, reply):
        return cls(
            **_job_fields(reply.job),
            running=[TaskInfo.from_pb(t) for t in reply.running],
            last_errors=[TaskInfo.from_pb(t) for t in reply.last_errors],
            tasks=[TaskInfo.from_pb(t) for t in reply.tasks],
            version=reply.version,
            waiting_reason=reply.waiting_reason,
            blocked=[BlockedWorker.from_pb(b) for b in reply.blocked],
        )

    @property
    def last_error(self):
        """The most recent task error, "" if none."""
        for task in self.last_errors:
            if task.error:
                return task.error
        return ""


@dataclass
class ActionResult(_Data):
    """The reply to cancel, retry, pause or resume."""

    job_id: int
    state: str
    tasks_changed: int = 0


@dataclass
class WorkerInfo(_Data):
    name: str
    slots: int = 0
    tags: List[str] = field(default_factory=list)
    alive: bool = False
    last_beat_s: float = 0.0
    running: List[TaskInfo] = field(default_factory=list)
    host: str = ""
    pid: int = 0
    interactive_slots: int = 0
    control: str = "enabled"  # "disabled" or "draining": takes no new task
    control_reason: str = ""
    cores: int = 0  # what tasks may book on it (0: unknown, an older worker)
    memory_bytes: int = 0
    cores_used: int = 0  # booked by its running tasks' requests
    memory_used_bytes: int = 0
    gpus: int = 0  # GPUs it has (0: none)
    gpus_used: int = 0
    # How its tasks are isolated: "cgroup v2 (...)" or "process group (why)"
    isolation: str = ""

    @classmethod
    def from_pb(cls, msg):
        return cls(
            name=msg.name,
            cores_used=msg.cores_used,
            memory_used_bytes=msg.memory_used_bytes,
            slots=msg.slots,
            tags=list(msg.tags),
            alive=msg.alive,
            last_beat_s=msg.last_beat_s,
            running=[TaskInfo.from_pb(t) for t in msg.running],
            host=msg.host,
            pid=msg.pid,
            interactive_slots=msg.interactive_slots,
            control=msg.control or "enabled",
            control_reason=msg.control_reason,
            cores=msg.cores,
            memory_bytes=msg.memory_bytes,
            isolation=msg.isolation,
            gpus=msg.gpus,
            gpus_used=msg.gpus_used,
        )


@dataclass
class TaskLog(_Data):
    task: int
    attempt: int = 0
    worker: str = ""
    text: bytes = b""  # what the task printed, in whatever encoding it used
    error: str = ""
    running: bool = False  # the attempt still runs: text is its log so far
    stats: Optional[AttemptStats] = None  # what it used; None while running or unknown

    @classmethod
    def from_pb(cls, msg):
        return cls(
            task=msg.task, attempt=msg.attempt, worker=msg.worker, text=msg.text, error=msg.error,
            running=msg.running, stats=_stats_of(msg, "stats"),
        )


@dataclass
class PublishResult(_Data):
    """The broker's acknowledgement of a publish: it is durable once you have this.

    ``duplicate`` is True when the event id was seen before; nothing new was then
    created and ``job_ids`` are the jobs of the first time.
    """

    event_id: str
    duplicate: bool = False
    job_ids: List[int] = field(default_factory=list)
    rules: List[str] = field(default_factory=list)  # rules that matched
    warnings: List[str] = field(default_factory=list)

    @classmethod
    def from_pb(cls, msg):
        return cls(
            event_id=msg.event_id,
            duplicate=msg.duplicate,
            job_ids=list(msg.job_ids),
            rules=list(msg.rules),
            warnings=list(msg.warnings),
        )


@dataclass
class Event(_Data):
    """A publish event as `farmhand events` lists it."""

    event_id: str
    path: str = ""
    meta: Dict[str, str] = field(default_factory=dict)
    source: str = ""
    received_unix_ms: int = 0
    job_ids: List[int] = field(default_factory=list)
    rules: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    # The current state of each of job_ids ("running", "succeeded", ...).
    job_states: List[str] = field(default_factory=list)

    @classmethod
    def from_pb(cls, msg):
        return cls(
            event_id=msg.event_id,
            path=msg.path,
            meta=dict(msg.meta),
            source=msg.source,
            received_unix_ms=msg.received_unix_ms,
            job_ids=list(msg.job_ids),
            rules=list(msg.rules),
            warnings=list(msg.warnings),
            job_states=[job_state_name(s) for s in msg.job_states],
        )


@dataclass
class BlockedWorker(_Data):
    """A worker blocked for a job after ``failures`` failed attempts of it
    (``reason``: the last one's error); ``Client.unblock`` clears it."""

    worker: str
    failures: int = 0
    reason: str = ""

    @classmethod
    def from_pb(cls, msg):
        return cls(worker=msg.worker, failures=msg.failures, reason=msg.reason)


@dataclass
class Limit(_Data):
    """A farm-wide limit (``farmhand limits``): ``capacity`` is None while the
    limit is named by jobs but not configured (they wait)."""

    name: str
    capacity: Optional[int] = None
    in_use: int = 0
    waiting_jobs: int = 0

    @classmethod
    def from_pb(cls, msg):
        return cls(
            name=msg.name,
            capacity=msg.capacity if msg.configured else None,
            in_use=msg.in_use,
            waiting_jobs=msg.waiting_jobs,
        )


@dataclass
class HookDelivery(_Data):
    """One webhook delivery (``farmhand hooks``): its id (the receiver's
    deduplication key, X-Farmhand-Delivery), event, job (None when the event
    is not about a job), attempts so far and the last attempt's error."""

    delivery_id: str
    event: str
    job_id: Optional[int] = None
    created_unix_ms: int = 0
    attempts: int = 0
    next_attempt_unix_ms: int = 0
    last_error: str = ""

    @classmethod
    def from_pb(cls, msg):
        return cls(
            delivery_id=msg.delivery_id,
            event=msg.event,
            job_id=msg.job_id or None,
            created_unix_ms=msg.created_unix_ms,
            attempts=msg.attempts,
            next_attempt_unix_ms=msg.next_attempt_unix_ms,
            last_error=msg.last_error,
        )


@dataclass
class Hook(_Data):
    """A webhook of the broker's config and its outbox: deliveries pending,
    delivered and failed (given up), the oldest pending one and the last one
    given up (None when there is none)."""

    name: str
    url: str
    events: List[str] = field(default_factory=list)
    pending: int = 0
    delivered: int = 0
    failed: int = 0
    oldest_pending: Optional[HookDelivery] = None
    last_failed: Optional[HookDelivery] = None

    @classmethod
    def from_pb(cls, msg):
        return cls(
            name=msg.name,
            url=msg.url,
            events=list(msg.events),
            pending=msg.pending,
            delivered=msg.delivered,
            failed=msg.failed,
            oldest_pending=(HookDelivery.from_pb(msg.oldest_pending)
                            if msg.HasField("oldest_pending") else None),
            last_failed=(HookDelivery.from_pb(msg.last_failed)
                         if msg.HasField("last_failed") else None),
        )


@dataclass
class Share(_Data):
    """A project's fair share (``farmhand shares``): its weight, its running
    tasks and its jobs waiting for slots. Projects the config does not name
    share one default share of weight 1."""

    project: str
    weight: int = 1
    running: int = 0
    queued_jobs: int = 0
    configured: bool = False  # named in the config's shares; else in the default share

    @classmethod
    def from_pb(cls, msg):
        return cls(project=msg.project, weight=msg.weight, running=msg.running,
                   queued_jobs=msg.queued_jobs, configured=msg.configured)


@dataclass
class Health(_Data):
    """The broker's own health (``farmhand admin health``).

    ``healthy`` is False while its state store cannot write: ``store_error`` says
    why, writes are refused and dispatch is stopped until the store writes again.
    """

    healthy: bool
    store_error: str = ""
    uptime_s: float = 0.0
    jobs: Dict[str, int] = field(default_factory=dict)  # every job state -> count
    tasks: Dict[str, int] = field(default_factory=dict)  # every task state -> count
    workers_alive: int = 0
    workers_silent: int = 0
    held_status_requests: int = 0
    failed_commits: int = 0
    store_retry_in_s: float = 0.0  # while not healthy: when the store is tried again

    @classmethod
    def from_pb(cls, msg):
        return cls(
            healthy=msg.store_writes,
            store_error=msg.store_error,
            uptime_s=msg.uptime_s,
            jobs={name: int(msg.jobs.get(name, 0)) for name in JOB_STATES},
            tasks={name: int(msg.tasks.get(name, 0)) for name in TASK_STATES},
            workers_alive=msg.workers_alive,
            workers_silent=msg.workers_silent,
            held_status_requests=msg.held_status_requests,
            failed_commits=msg.failed_commits,
            store_retry_in_s=msg.store_retry_in_s,
        )
