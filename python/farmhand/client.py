"""Client: the Python side of the client <-> broker protocol (proto/PROTOCOL.md).

One method per request kind. Each sends one ClientRequest (protocol version,
random request id, body) on a fresh ZeroMQ DEALER socket with LINGER 0, waits
for the ClientReply and checks that it answers this request with the expected
body. A reply with ok=false raises the FarmhandError subclass of its
error_code, carrying the broker's one-line reason; no reply within the timeout
raises BrokerUnreachable: "broker unreachable at ENDPOINT (no reply within N s)".

Requests that are safe to repeat are resent within the timeout (Lazy Pirate,
ZeroMQ guide ch. 4), byte for byte the same request: reads, submits (they
always carry an idempotency key, generated when none is given) and publishes
(they always carry an event id, likewise), and actions (each carries an
idempotency key, random unless given: the broker acts once per key and answers
a repeat with its first reply). This mirrors cli/client.cpp.

Thread-safe: every call opens and closes its own socket on a shared ZeroMQ
context (the context is recreated after fork()).
"""

import math
import os
import pwd
import re
import secrets
import socket
import threading
import time

import zmq
import zmq.utils.monitor
from zmq.utils import z85
from google.protobuf.message import DecodeError

from farmhand import errors
from farmhand import farmhand_pb2 as pb
from farmhand._protocol import PROTOCOL_VERSION
from farmhand.models import (
    OpenJdSubmission,
    FINAL_JOB_STATES,
    Hook,
    ActionResult,
    Event,
    Health,
    Job,
    Limit,
    JobId,
    JobStatus,
    PublishResult,
    TaskLog,
    WorkerInfo,
    job_state_name,
    job_state_value,
    task_state_value,
)

__all__ = ["Client", "DEFAULT_BROKER", "DEFAULT_TIMEOUT_S", "MEDIA_KINDS"]

DEFAULT_BROKER = "tcp://127.0.0.1:7600"
# Replies take milliseconds; a broker restarted by systemd is back within a
# second or two. Ten seconds covers that and a busy disk.
DEFAULT_TIMEOUT_S = 10.0

# Resend no sooner than this (as cli/client.cpp): a live broker answers in
# milliseconds, while one that restarts is back within a second or two.
_MIN_RESEND_AFTER_S = 1.0
# Pause after a try that failed at once, so a broken endpoint is not hammered.
_MIN_TRY_S = 0.1
# wait() long-polls: the broker holds each status request until the job
# changes or this many seconds pass, so a change is seen as soon as it is
# committed. With a broker too old to hold requests (no version in the reply)
# it polls, fast at first (a thumbnail is done in ~0.1 s), then four times a
# second.
_LONG_POLL_S = 10.0
# The broker holds a request for at most a minute.
_MAX_HOLD_S = 60.0
_FIRST_POLL_S = 0.005
_MAX_POLL_S = 0.25
# A live broker answers a status request in milliseconds.
_LAST_POLL_S = 0.25

MEDIA_KINDS = ("thumbnail", "convert", "transcode", "contactsheet")

_ACTIONS = {
    "cancel": pb.JobActionRequest.CANCEL,
    "retry": pb.JobActionRequest.RETRY,
    "pause": pb.JobActionRequest.PAUSE,
    "resume": pb.JobActionRequest.RESUME,
    "unblock": pb.JobActionRequest.UNBLOCK,
    "kill": pb.JobActionRequest.KILL,
    "skip": pb.JobActionRequest.SKIP,
    "requeue": pb.JobActionRequest.REQUEUE,
}

_WIRE_TASK_STATES = {
    "waiting": pb.TASK_WAITING,
    "queued": pb.TASK_QUEUED,
    "running": pb.TASK_RUNNING,
    "succeeded": pb.TASK_SUCCEEDED,
    "failed": pb.TASK_FAILED,
    "dead": pb.TASK_DEAD,
    "cancelled": pb.TASK_CANCELLED,
}


def _set_text(value):
    """A task or frame set for the wire: "3,7-9", an int, or ints."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return ",".join(str(int(v)) for v in value)


_SIZE_SHIFTS = {"": 0, "B": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def byte_size(value):
    """Bytes of a size: an int, or text as the CLI takes it ("8G", "512M",
    "1.5T", "8GiB"; binary units). Raises InvalidArgument naming what was wrong."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise errors.InvalidArgument(f"size {value!r}: expected bytes or text such as 8G")
    if isinstance(value, int):
        if value < 0:
            raise errors.InvalidArgument(f"size {value}: must not be negative")
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).upper() if match else ""
    if len(unit) > 1 and unit.endswith("B"):
        unit = unit[:-1]
    if len(unit) > 1 and unit.endswith("I"):
        unit = unit[:-1]
    if not match or unit not in _SIZE_SHIFTS:
        raise errors.InvalidArgument(
            f"size {value!r}: expected a number and K, M, G or T, e.g. 8G or 512M")
    return int(round(float(match.group(1)) * (1 << _SIZE_SHIFTS[unit])))


def _login_name():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or str(os.geteuid())


def random_key():
    """128 random bits as 32 hex digits, for idempotency keys and event ids."""
    return secrets.token_hex(16)


def _seconds_text(seconds):
    return "%g" % seconds


def _timeout_from_env():
    text = os.environ.get("FARMHAND_TIMEOUT", "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        return float(text)
    except ValueError:
        raise errors.InvalidArgument(
            "FARMHAND_TIMEOUT '%s' is not a number of seconds" % text
        ) from None


def _check_timeout(seconds, what="timeout"):
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise errors.InvalidArgument(
            "%s %r is not a number of seconds" % (what, seconds)
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise errors.InvalidArgument("%s %s is not a positive number of seconds" % (what, seconds))
    return seconds


def _text(value):
    """A parameter value as the wire carries it: 24.0 -> "24", 23.976 -> "23.976"."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _box(value):
    """A size: 256 -> "256", (256, 144) -> "256x144", "50%" unchanged."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise errors.InvalidArgument("a size is (width, height), got %r" % (value,))
        return "%sx%s" % (_text(value[0]), _text(value[1]))
    return _text(value)


def _frame_set(frames):
    """A frame set in fileseq syntax from a str, an int, a range or ints."""
    if isinstance(frames, str):
        return frames
    if isinstance(frames, bool):
        raise errors.InvalidArgument("frames=%r is not a frame set" % (frames,))
    if isinstance(frames, int):
        return str(frames)
    if isinstance(frames, range):
        if len(frames) == 0:
            raise errors.InvalidArgument("frames=%r is empty" % (frames,))
        if len(frames) == 1:
            return str(frames[0])
        text = "%d-%d" % (frames[0], frames[-1])
        return text if frames.step == 1 else "%sx%d" % (text, abs(frames.step))
    try:
        items = [int(f) for f in frames]
    except (TypeError, ValueError):
        raise errors.InvalidArgument("frames=%r is not a frame set" % (frames,)) from None
    if not items:
        raise errors.InvalidArgument("frames is empty")
    return ",".join(str(f) for f in items)


def _job_ids(after):
    if after is None:
        return []
    if isinstance(after, int):
        return [after]
    return [int(a) for a in after]


def _string_map(mapping, what):
    out = {}
    for key, value in dict(mapping or {}).items():
        key = str(key)
        if not key:
            raise errors.InvalidArgument("%s keys must not be empty" % what)
        out[key] = _text(value)
    return out


def _curve_key_in(text):
    """The first line of ``text`` that is a CURVE key (40 Z85 characters), or None."""
    for line in text.splitlines():
        line = line.strip()
        if len(line) != 40:
            continue
        try:
            z85.decode(line)
        except (ValueError, KeyError, IndexError):
            continue
        return line
    return None


def _read_key_file(path):
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            key = _curve_key_in(f.read())
    except OSError as e:
        raise errors.InvalidArgument("cannot read key file %s: %s" % (path, e.strerror)) from None
    if key is None:
        raise errors.InvalidArgument("no CURVE key in %s (a line of 40 Z85 characters)" % path)
    return key


def _curve_keys(broker_key, key_file):
    """(server, public, secret) keys as bytes for a CurveZMQ client, or None."""
    if not broker_key and not key_file:
        return None
    if not broker_key or not key_file:
        raise errors.InvalidArgument(
            "CurveZMQ needs both the broker's public key and a secret key file")
    if broker_key.startswith("@"):
        server = _read_key_file(broker_key[1:])
    else:
        server = _curve_key_in(broker_key)
        if server is None:
            raise errors.InvalidArgument(
                "the broker's CURVE key must be 40 Z85 characters, or @FILE holding it")
    secret = _read_key_file(key_file)
    return server.encode(), zmq.curve_public(secret.encode()), secret.encode()


def _absolute(path):
    """The broker may run on another host with its own working directory: paths
    go over the wire absolute (as the CLI sends them)."""
    path = os.fspath(path)
    return path if not path or os.path.isabs(path) else os.path.abspath(path)


class Client:
    """A connection to a farmhand broker's client endpoint.

    ``broker`` defaults to $FARMHAND_BROKER, else tcp://127.0.0.1:7600;
    ``timeout`` (seconds) bounds each call, resends included, and defaults to
    $FARMHAND_TIMEOUT, else 10.

    CurveZMQ, when the broker's client port runs it: ``broker_key`` is the
    broker's public key (or "@FILE" holding it; default $FARMHAND_BROKER_KEY)
    and ``key_file`` your secret key file from ``farmhand admin keygen``
    (default $FARMHAND_KEY_FILE). Both or neither.
    """

    def __init__(self, broker=None, timeout=None, broker_key=None, key_file=None):
        self._broker = broker or os.environ.get("FARMHAND_BROKER") or DEFAULT_BROKER
        self._timeout = _check_timeout(timeout if timeout is not None else _timeout_from_env())
        self._curve = _curve_keys(
            broker_key if broker_key is not None else os.environ.get("FARMHAND_BROKER_KEY", ""),
            key_file if key_file is not None else os.environ.get("FARMHAND_KEY_FILE", ""),
        )
        self._lock = threading.Lock()
        self._ctx = None
        self._ctx_pid = None

    def __repr__(self):
        return "farmhand.Client(%r, timeout=%g)" % (self._broker, self._timeout)

    @property
    def broker(self):
        return self._broker

    @property
    def timeout(self):
        return self._timeout

    def close(self):
        """Releases the ZeroMQ context. The client opens a new one if used again."""
        with self._lock:
            ctx, self._ctx = self._ctx, None
            if ctx is not None and self._ctx_pid == os.getpid():
                ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ publish

    def publish(self, path, meta=None, event_id=None, source="python"):
        """Publishes ``path`` (a sequence pattern, file or directory) with ``meta``.

        The broker matches its rules and creates their jobs; the returned
        PublishResult means the event is durable. Give a deterministic
        ``event_id`` (e.g. "proj/sh010/comp/v003") so that publishing the same
        thing again creates nothing (``duplicate`` is then True and ``job_ids``
        are the first publish's). Without one a random id is sent, so that a
        resend after a timeout cannot publish twice.
        """
        own_id = not event_id
        request = pb.ClientRequest()
        body = request.publish
        body.path = _absolute(path)
        body.meta.update(_string_map(meta, "meta"))
        body.event_id = random_key() if own_id else str(event_id)
        body.source = source or ""
        result = PublishResult.from_pb(self._call(request, "publish", resend=True))
        # A fresh random id can only have been seen in our own earlier try.
        if own_id:
            result.duplicate = False
        return result

    def events(self, limit=100, event_id=None):
        """Publish events, newest first, with the jobs they created."""
        request = pb.ClientRequest()
        request.events.limit = int(limit or 0)
        request.events.event_id = event_id or ""
        reply = self._call(request, "events", resend=True)
        return [Event.from_pb(e) for e in reply.events]

    # ------------------------------------------------------------ submit

    def submit(
        self,
        kind,
        frames=None,
        *,
        chunk=None,
        chunk_target_s=0,
        tasks=None,
        priority=0,
        pool="",
        after=(),
        after_frames=0,
        name="",
        max_attempts=0,
        timeout_s=0,
        labels=None,
        command=None,
        params=None,
        idempotency_key=None,
        lane="",
        limits=(),
        max_running=0,
        project="",
        cores=0,
        memory=0,
        gpus=0,
        memory_retry_factor=0,
        input=None,  # noqa: A002 (mirrors the CLI's INPUT)
        output=None,
        frame=None,
        size=None,
        resize=None,
        format=None,  # noqa: A002 (mirrors --format)
        codec=None,
        fps=None,
        crf=None,
        missing=None,
        ocio=None,
        audio=None,
        audio_offset=None,
        segments=None,
        every=None,
        columns=None,
        title=None,
        burn_in=None,
        slate=False,
        meta=None,
        font=None,
        display=None,
        view=None,
        look=None,
        burn_in_size=None,
        burn_in_colour=None,
    ):
        """Submits a job and returns its id (a JobId: an int with ``duplicate``
        and ``task_count``).

        kind: "noop", "command", "thumbnail", "convert" or "transcode".
        noop: ``tasks=N`` or ``frames=``. command: ``command=`` names a template
        of the broker's config, ``frames=`` is required, ``params=`` fills it.
        Media kinds take ``input=`` (sequence pattern or file) and ``output=``,
        and the options of `farmhand submit KIND`: thumbnail ``frame``, ``size``;
        convert ``resize``, ``format``; transcode ``codec`` (h264, h265, vp9,
        av1, prores, dnxhr), ``fps``, ``crf``, ``missing``, ``audio`` (a sound
        file) and ``audio_offset`` (frames), ``segments`` (N: encoded by N
        workers and joined), ``burn_in`` (a text or a list of
        "[POSITION=]TEXT": {frame}, {timecode}, {shot}...), ``slate`` (a slate
        frame first), ``meta`` (a dict of values for them), ``font``; contactsheet ``every``, ``columns``,
        ``size`` (a cell's width), ``title``; all ``ocio`` and its ``display``,
        ``view`` and ``look``. Sizes may be "WxH", W, or (W, H).
        ``limits`` names limits each running task holds a token of (see
        ``limits()``); ``max_running`` caps the job's running tasks.
        ``cores`` and ``memory`` (bytes, or "8G", "512M") are what each task
        needs of a worker: tasks are packed so no worker is over-committed, and
        the memory is enforced; ``gpus`` only workers with that many free take
        a task (CUDA_VISIBLE_DEVICES names the ones it got); ``memory_retry_factor`` (1 to 16) raises the
        memory request after a task runs out of memory.
        ``project`` names the show the job is for (else its "project" label);
        the job records the user and host that submitted it.
        ``frames`` may be a fileseq string ("1-100x2"), an int, a range or ints.
        ``chunk`` defaults to 1, or to the broker's default for media jobs.
        ``chunk_target_s`` makes chunks adapt: the chunks not yet started are
        cut again, as tasks finish, to take about that many seconds each.
        Without ``idempotency_key`` a random one is sent, so that a resend after
        a timeout cannot create a second job.
        """
        if not isinstance(kind, str) or not kind:
            raise errors.InvalidArgument("kind must be a job kind such as 'noop' or 'thumbnail'")
        media = {
            "frame": frame,
            "size": size,
            "resize": resize,
            "format": format,
            "codec": codec,
            "fps": fps,
            "crf": crf,
            "missing": missing,
            "ocio": ocio,
            "audio": audio,
            "audio_offset": audio_offset,
            "segments": segments,
            "every": every,
            "columns": columns,
            "title": title,
            "font": font,
            "display": display,
            "view": view,
            "look": look,
            "burn_in_size": burn_in_size,
            "burn_in_colour": burn_in_colour,
        }
        is_media = kind in MEDIA_KINDS
        spec = pb.JobSpec()
        spec.kind = kind
        spec.name = name or ""
        spec.priority = int(priority)
        spec.pool = pool or ""
        spec.after.extend(_job_ids(after))
        spec.after_frames = int(after_frames or 0)
        spec.max_attempts = int(max_attempts or 0)
        spec.timeout_s = int(timeout_s or 0)
        spec.labels.update(_string_map(labels, "label"))
        spec.lane = lane or ""
        if isinstance(limits, str):
            limits = [limits]
        spec.limits.extend(str(name) for name in limits)
        spec.max_running = int(max_running or 0)
        spec.project = project or ""
        spec.cores = int(cores or 0)
        spec.memory_bytes = byte_size(memory)
        spec.gpus = int(gpus or 0)
        spec.memory_retry_factor = float(memory_retry_factor or 0)
        spec.chunk_target_s = int(chunk_target_s or 0)
        spec.submitted_by = _login_name()
        spec.submitted_from = socket.gethostname()
        spec.params.update(_string_map(params, "param"))

        if is_media:
            if tasks is not None or command:
                raise errors.InvalidArgument(
                    "%s jobs take input=, output= and frames=, not %s="
                    % (kind, "tasks" if tasks is not None else "command")
                )
            if input is None or output is None:
                raise errors.InvalidArgument("%s jobs need input= and output=" % kind)
            spec.params["input"] = _absolute(input)
            spec.params["output"] = _absolute(output)
            for key, value in media.items():
                if value is None or value == "":
                    continue
                if key in ("size", "resize") and kind != "contactsheet":
                    spec.params[key] = _box(value)
                elif key in ("audio", "font"):
                    spec.params[key] = _absolute(value)
                else:
                    spec.params[key] = _text(value)
            if burn_in:
                burns = [burn_in] if isinstance(burn_in, str) else list(burn_in)
                spec.params["burn_in"] = "\n".join(_text(b) for b in burns)
            if slate:
                spec.params["slate"] = "true"
            for key, value in (meta or {}).items():
                spec.params["meta." + _text(key)] = _text(value)
            if frames is not None:
                spec.frames = _frame_set(frames)
            spec.chunk = int(chunk or 0)
        else:
            given = [k for k, v in media.items() if v is not None]
            given += [k for k, v in (("input", input), ("output", output)) if v is not None]
            if given:
                raise errors.InvalidArgument(
                    "%s= is an option of media jobs (%s); pass template values in params="
                    % (given[0], ", ".join(MEDIA_KINDS))
                )
            if kind == "command":
                if not command:
                    raise errors.InvalidArgument("command jobs need command= (a template name)")
                if frames is None:
                    raise errors.InvalidArgument("command jobs need frames=, e.g. '1-100'")
            if command:
                spec.command_template = command
            if tasks is not None:
                if frames is not None:
                    raise errors.InvalidArgument("give tasks= or frames=, not both")
                spec.tasks = int(tasks)
                spec.chunk = 1
            else:
                if kind == "noop" and frames is None:
                    raise errors.InvalidArgument("noop jobs need tasks= or frames=")
                if frames is not None:
                    spec.frames = _frame_set(frames)
                spec.chunk = 1 if chunk is None else int(chunk)

        own_key = not idempotency_key
        spec.idempotency_key = random_key() if own_key else str(idempotency_key)
        request = pb.ClientRequest()
        request.submit.spec.CopyFrom(spec)
        reply = self._call(request, "submit", resend=True)
        # A fresh random key can only have been seen in our own earlier try: for
        # the caller this job is new.
        return JobId(reply.job_id, duplicate=reply.duplicate and not own_key,
                     task_count=reply.task_count, warnings=reply.warnings)

    def submit_openjd(
        self,
        template,
        parameters=None,
        env_templates=(),
        *,
        priority=0,
        pool="",
        after=(),
        max_attempts=0,
        timeout_s=0,
        labels=None,
        idempotency_key=None,
        limits=(),
        max_running=0,
        project="",
    ):
        """Submits an Open Job Description job template (a file, YAML or JSON):
        one farmhand job per step, each after the steps it depends on, as
        `farmhand submit openjd` does. Returns an OpenJdSubmission.

        ``parameters`` maps job parameter names to values (as ``-p NAME=VALUE``);
        ``env_templates`` are environment template files, applied in order.
        Relative PATH values start in the current directory, relative defaults in
        the template's. The other options apply to every step's job. The broker
        refuses templates unless its config enables them (``openjd:``).
        """
        template = os.path.abspath(os.fspath(template))
        request = pb.ClientRequest()
        body = request.submit_openjd
        with open(template, "rb") as f:
            body.source.template = f.read()
        body.source.template_name = template
        for path in env_templates:
            path = os.fspath(path)
            with open(path, "rb") as f:
                body.source.env_templates.add(name=path, text=f.read())
        for name, value in _string_map(parameters, "parameter").items():
            body.source.parameters.add(name=name, value=value)
        body.source.template_dir = os.path.dirname(template)
        body.source.working_dir = os.getcwd()
        options = body.options
        options.kind = "openjd"
        options.priority = int(priority)
        options.pool = pool or ""
        options.after.extend(_job_ids(after))
        options.max_attempts = int(max_attempts or 0)
        options.timeout_s = int(timeout_s or 0)
        options.labels.update(_string_map(labels, "label"))
        if isinstance(limits, str):
            limits = [limits]
        options.limits.extend(str(name) for name in limits)
        options.max_running = int(max_running or 0)
        options.project = project or ""
        options.submitted_by = _login_name()
        options.submitted_from = socket.gethostname()
        own_key = not idempotency_key
        options.idempotency_key = random_key() if own_key else str(idempotency_key)
        reply = self._call(request, "submit_openjd", resend=True)
        steps = [(s.step, JobId(s.job_id, duplicate=reply.duplicate and not own_key,
                                task_count=s.task_count)) for s in reply.steps]
        return OpenJdSubmission(reply.job_name, steps,
                                duplicate=reply.duplicate and not own_key,
                                warnings=reply.warnings)

    # ------------------------------------------------------------ reads

    def status(self, job_id, tasks=False, tasks_offset=0, tasks_limit=0, tasks_state=None,
               timeout=None, seen_version=0, hold=0):
        """A job's JobStatus; with ``tasks=True`` (or any tasks_* argument) a page of
        its tasks too. ``timeout`` overrides the client's for this call.

        Long poll: with ``seen_version`` (a JobStatus.version) and ``hold`` seconds
        (at most 60), the broker answers when the job no longer matches that
        version, or after ``hold`` seconds with the job unchanged. Such a call
        is one try that may take ``hold`` plus the timeout.
        """
        hold = float(hold or 0)
        if not (0 <= hold <= _MAX_HOLD_S):
            raise errors.InvalidArgument("hold must be 0 to %g seconds" % _MAX_HOLD_S)
        request = pb.ClientRequest()
        body = request.status
        body.job_id = int(job_id)
        body.tasks = bool(tasks or tasks_offset or tasks_limit or tasks_state)
        body.tasks_offset = int(tasks_offset or 0)
        body.tasks_limit = int(tasks_limit or 0)
        if tasks_state:
            try:
                body.tasks_state = task_state_value(tasks_state)
            except KeyError:
                raise errors.InvalidArgument("unknown task state '%s'" % tasks_state) from None
        if hold > 0 and seen_version:
            body.seen_version = int(seen_version)
            body.wait_ms = max(1, int(hold * 1000))
            # Held by the broker: a resend within the hold would only park a copy.
            timeout = (self._timeout if timeout is None else _check_timeout(timeout)) + hold
            reply = self._call(request, "status", resend=False, timeout=timeout)
        else:
            reply = self._call(request, "status", resend=True, timeout=timeout)
        return JobStatus.from_pb(reply)

    def wait(self, job_id, timeout=None, check=False):
        """Follows the job's status (long-polled: each change is seen when the
        broker commits it) until it is succeeded, failed or cancelled and
        returns that final JobStatus.

        Raises farmhand.TimeoutError (with ``.status``, the last one seen) if the
        job is not final within ``timeout`` seconds (None: wait as long as it
        takes), BrokerUnreachable if the broker stays silent for the client's
        timeout, and with ``check=True`` JobFailed unless the job succeeded.
        """
        if timeout is not None:
            timeout = _check_timeout(timeout, "wait timeout")
        started = time.monotonic()
        job_deadline = None if timeout is None else started + timeout
        # The broker may restart while we wait: keep asking until it has been
        # silent for the client's whole timeout since its last reply.
        silence_deadline = started + self._timeout
        interval = _FIRST_POLL_S
        last = None
        seen = 0  # the version of `last`, while the broker long-polls

        def timed_out(why):
            error = errors.TimeoutError(
                "job %s not finished within %s s (%s)" % (job_id, _seconds_text(timeout), why)
            )
            error.status = last
            return error

        while True:
            now = time.monotonic()
            call_timeout = silence_deadline - now
            if job_deadline is not None:
                # The last poll, at the deadline, still gets time for an answer.
                call_timeout = min(call_timeout, max(job_deadline - now, _LAST_POLL_S))
            hold = _LONG_POLL_S
            if job_deadline is not None:
                hold = min(hold, job_deadline - now)
            try:
                if seen and hold > 0.001:
                    status = self.status(job_id, timeout=self._timeout, seen_version=seen,
                                         hold=hold)
                else:
                    status = self.status(job_id, timeout=max(call_timeout, 0.001))
            except errors.BrokerRefused:
                raise  # waiting longer changes nothing
            except errors.BrokerUnreachable:
                if seen:
                    # A held request that got no answer: the broker may have
                    # restarted and forgotten it. Ask afresh, with a whole
                    # timeout to answer in.
                    seen = 0
                    silence_deadline = time.monotonic() + self._timeout
                    continue
                now = time.monotonic()
                if job_deadline is not None and now >= job_deadline:
                    raise timed_out("broker unreachable at %s" % self._broker) from None
                if now + _MAX_POLL_S < silence_deadline:
                    time.sleep(_MAX_POLL_S)
                    continue
                raise errors.BrokerUnreachable(self._unreachable_reason(self._timeout)) from None
            changed = status.version != seen
            last = status
            seen = status.version
            silence_deadline = time.monotonic() + self._timeout
            if status.state in FINAL_JOB_STATES:
                if check and status.state != "succeeded":
                    error = status.last_error
                    raise errors.JobFailed(
                        "job %s %s%s" % (job_id, status.state, ": " + error if error else ""),
                        status=status,
                    )
                return status
            now = time.monotonic()
            if job_deadline is not None and now >= job_deadline:
                total = status.task_count or sum(status.counts.values())
                raise timed_out(
                    "%s, %d/%d tasks succeeded"
                    % (status.state, status.counts.get("succeeded", 0), total)
                )
            if seen and changed:
                interval = _FIRST_POLL_S
                continue  # the next request is held until something changes
            # An older broker (no version) is polled; so is one that answered a
            # held request without a change (its hold ran out, or it holds too
            # many requests already): asking again at once would spin.
            pause = interval if job_deadline is None else min(interval, job_deadline - now)
            time.sleep(max(pause, 0))
            interval = min(interval * 2, _MAX_POLL_S)

    def jobs(self, state=None, limit=0, *, user=None, project=None, labels=None, name=None,
             since=None, offset=0):
        """The newest jobs (Job) matching every filter given, in id order:
        ``state`` ("running", ...), ``user`` (who submitted), ``project``,
        ``labels`` (each must match), ``name`` (a case-insensitive substring),
        ``since`` (seconds ago, or a datetime). ``limit`` 0 means the broker's
        default (1000); ``offset`` skips the newest matches (the next page)."""
        request = pb.ClientRequest()
        request.list.SetInParent()
        if user:
            request.list.user = str(user)
        if project:
            request.list.project = str(project)
        request.list.labels.update(_string_map(labels, "label"))
        if name:
            request.list.name_contains = str(name)
        if since is not None:
            if hasattr(since, "timestamp"):
                request.list.since_unix_ms = int(since.timestamp() * 1000)
            else:
                request.list.since_unix_ms = int((time.time() - float(since)) * 1000)
        request.list.offset = int(offset or 0)
        if state:
            try:
                request.list.state = job_state_value(state)
            except KeyError:
                raise errors.InvalidArgument(
                    "unknown job state '%s' (one of queued, running, paused, succeeded, failed, "
                    "cancelled)" % state
                ) from None
        request.list.limit = int(limit or 0)
        reply = self._call(request, "list", resend=True)
        return [Job.from_pb(j) for j in reply.jobs]

    def workers(self):
        """Workers the broker knows (WorkerInfo), with what they run."""
        request = pb.ClientRequest()
        request.workers.SetInParent()
        reply = self._call(request, "workers", resend=True)
        return [WorkerInfo.from_pb(w) for w in reply.workers]

    def health(self):
        """The broker's Health: whether its state store writes, uptime, counts.

        A read: answered (with ``healthy`` False) while the store cannot write.
        """
        request = pb.ClientRequest()
        request.health.SetInParent()
        return Health.from_pb(self._call(request, "health", resend=True))

    def _control_worker(self, name, action, reason):
        request = pb.ClientRequest()
        request.worker_control.name = str(name)
        request.worker_control.action = action
        request.worker_control.reason = str(reason or "")
        request.worker_control.idempotency_key = random_key()
        reply = self._call(request, "worker_control", resend=True)
        return [WorkerInfo.from_pb(w) for w in reply.workers]

    def disable_worker(self, name, reason=""):
        """The worker takes no new task (its running ones finish), across
        restarts, until enabled; returns the workers."""
        return self._control_worker(name, pb.WorkerControlRequest.DISABLE, reason)

    def drain_worker(self, name, reason="", wait=False, poll_s=0.2):
        """As disable_worker, for maintenance; with ``wait``, returns once the
        worker runs nothing."""
        workers = self._control_worker(name, pb.WorkerControlRequest.DRAIN, reason)
        while wait and any(w.name == name and w.running for w in workers):
            time.sleep(poll_s)
            workers = self.workers()
        return workers

    def enable_worker(self, name):
        """Lets a disabled or draining worker take tasks again."""
        return self._control_worker(name, pb.WorkerControlRequest.ENABLE, "")

    def hooks(self):
        """The webhooks of the broker's config (Hook), with their outbox:
        pending, delivered and failed deliveries (``farmhand hooks``)."""
        request = pb.ClientRequest()
        request.hooks.SetInParent()
        reply = self._call(request, "hooks", resend=True)
        return [Hook.from_pb(hook) for hook in reply.hooks]

    def limits(self):
        """The farm's limits (Limit): capacity, tokens in use, jobs waiting."""
        request = pb.ClientRequest()
        request.limits.SetInParent()
        reply = self._call(request, "limits", resend=True)
        return [Limit.from_pb(limit) for limit in reply.limits]

    def shares(self):
        """Fair share between projects (Share): weights, running tasks, queued
        jobs. Empty weights everywhere (all 1) when the config sets no shares."""
        request = pb.ClientRequest()
        request.limits.SetInParent()
        reply = self._call(request, "limits", resend=True)
        return [Share.from_pb(share) for share in reply.shares]

    def set_limit(self, name, capacity):
        """Sets a limit's capacity now, durably (as ``farmhand limit set``);
        returns the limits."""
        request = pb.ClientRequest()
        request.limits.set.name = str(name)
        request.limits.set.capacity = int(capacity)
        request.limits.set.idempotency_key = random_key()
        reply = self._call(request, "limits", resend=True)
        return [Limit.from_pb(limit) for limit in reply.limits]

    def logs(self, job_id, task=None):
        """Task logs (TaskLog) of a job: one task's, or every task's with a log."""
        request = pb.ClientRequest()
        request.logs.job_id = int(job_id)
        request.logs.task = -1 if task is None else int(task)
        reply = self._call(request, "logs", resend=True)
        return [TaskLog.from_pb(log) for log in reply.logs]

    # ------------------------------------------------------------ actions

    # Every action carries an idempotency key (random unless given): the
    # broker answers a repeat of it with its first reply, without acting
    # again, so a resend after a lost reply is safe.

    def cancel(self, job_id, idempotency_key=None):
        """Cancels a job; running tasks are stopped."""
        return self._act(job_id, "cancel", key=idempotency_key)

    def retry(self, job_id, tasks=None, frames=None, state=None, idempotency_key=None):
        """Runs a job's dead, failed and cancelled tasks again, with a fresh
        budget of attempts numbered on from the earlier ones. ``tasks`` (task
        indices: "3,7-9", an int or a list), ``frames`` (the tasks covering
        them) or ``state`` ("dead", "succeeded", ...) select tasks instead;
        tasks named by index or frame run again even when they succeeded."""
        return self._act(job_id, "retry", tasks=tasks, frames=frames, state=state,
                         key=idempotency_key)

    def kill(self, job_id, tasks=None, frames=None, state=None, fail=False,
             idempotency_key=None):
        """Stops the selected running tasks; each runs again as a new attempt
        that uses none of its budget, or with ``fail`` counts as a failed one."""
        if tasks is None and frames is None and state is None:
            raise ValueError("kill needs tasks, frames or state")
        return self._act(job_id, "kill", tasks=tasks, frames=frames, state=state, fail=fail,
                         key=idempotency_key)

    def skip(self, job_id, tasks=None, frames=None, state=None, idempotency_key=None):
        """Marks the selected tasks succeeded without running them (running
        ones are stopped); their dependants are released."""
        if tasks is None and frames is None and state is None:
            raise ValueError("skip needs tasks, frames or state")
        return self._act(job_id, "skip", tasks=tasks, frames=frames, state=state,
                         key=idempotency_key)

    def requeue(self, job_id, tasks=None, frames=None, state=None, idempotency_key=None):
        """Runs a finished job again: every task, or the selected ones, with
        attempt numbers continuing (earlier attempts' logs are kept)."""
        return self._act(job_id, "requeue", tasks=tasks, frames=frames, state=state,
                         key=idempotency_key)

    def pause(self, job_id, idempotency_key=None):
        """Dispatches no more tasks of a job; running ones finish."""
        return self._act(job_id, "pause", key=idempotency_key)

    def resume(self, job_id, idempotency_key=None):
        """Dispatches a paused job again."""
        return self._act(job_id, "resume", key=idempotency_key)

    def unblock(self, job_id, worker=None, idempotency_key=None):
        """Lets workers blocked for failing a job take its tasks again: one
        worker, or all (None). ``tasks_changed`` of the result counts them."""
        return self._act(job_id, "unblock", worker=worker, key=idempotency_key)

    def set_job(self, job_id, priority=None, max_running=None, pool=None, max_attempts=None,
                timeout=None, limits=None, cores=None, memory=None, memory_retry_factor=None,
                gpus=None):
        """Changes a queued or running job (as ``farmhand job set``); running
        tasks keep running. Each argument given replaces the job's: ``limits``
        a list of names ([] for none), ``timeout`` seconds (0: none),
        ``max_running`` and ``max_attempts`` 0 for no cap / the broker's default."""
        request = pb.ClientRequest()
        body = request.job_set
        body.job_id = int(job_id)
        body.idempotency_key = random_key()
        if priority is not None:
            body.priority = int(priority)
        if max_running is not None:
            body.max_running = int(max_running)
        if pool is not None:
            body.pool = str(pool)
        if max_attempts is not None:
            body.max_attempts = int(max_attempts)
        if timeout is not None:
            body.timeout_s = int(timeout)
        if limits is not None:
            if isinstance(limits, str):
                raise TypeError("limits must be a list of limit names, not a string")
            body.set_limits = True
            body.limits.extend(str(name) for name in limits)
        if cores is not None:
            body.cores = int(cores)
        if memory is not None:
            body.memory_bytes = byte_size(memory)
        if gpus is not None:
            body.gpus = int(gpus)
        if memory_retry_factor is not None:
            body.memory_retry_factor = float(memory_retry_factor)
        # Setting the same values twice is harmless: safe to resend.
        reply = self._call(request, "action", resend=True)
        return ActionResult(job_id=int(job_id), state=job_state_name(reply.state),
                            tasks_changed=reply.tasks_changed)

    def _act(self, job_id, action, worker=None, tasks=None, frames=None, state=None,
             fail=False, key=None):
        request = pb.ClientRequest()
        body = request.action
        body.job_id = int(job_id)
        body.action = _ACTIONS[action]
        if worker:
            body.worker = str(worker)
        if tasks is not None:
            body.tasks = _set_text(tasks)
        if frames is not None:
            body.frames = _set_text(frames)
        if state is not None:
            if state not in _WIRE_TASK_STATES:
                raise ValueError("unknown task state %r (%s)" % (state, ", ".join(_WIRE_TASK_STATES)))
            body.state = _WIRE_TASK_STATES[state]
        body.fail = bool(fail)
        body.idempotency_key = str(key) if key else random_key()
        # The key makes a resend safe: the broker acts once.
        reply = self._call(request, "action", resend=True)
        return ActionResult(
            job_id=int(job_id),
            state=job_state_name(reply.state),
            tasks_changed=reply.tasks_changed,
        )

    # ------------------------------------------------------------ transport

    def _unreachable_reason(self, waited):
        return "broker unreachable at %s (no reply within %s s)" % (
            self._broker,
            _seconds_text(waited),
        )

    def _context(self):
        with self._lock:
            # A context does not survive fork(): a child gets its own.
            if self._ctx is None or self._ctx_pid != os.getpid():
                self._ctx = zmq.Context()
                self._ctx_pid = os.getpid()
            return self._ctx

    def _round_trip(self, payload, timeout):
        """One try on a fresh DEALER socket: the reply's frames, or None if no
        reply came within ``timeout`` seconds (or the request could not be sent).

        With CurveZMQ a socket monitor hears the handshakes the broker ends:
        BrokerRefused at once when it says why (the key is not admitted), or at
        the timeout when handshakes kept ending without a reason (the broker
        key given is not the broker's), as the CLI does (common/wire.cpp)."""
        sock = self._context().socket(zmq.DEALER)
        monitor = None
        try:
            sock.setsockopt(zmq.LINGER, 0)
            if self._curve is not None:
                sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve
                monitor = sock.get_monitor_socket(
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            try:
                sock.connect(self._broker)
            except zmq.ZMQError as e:
                raise errors.InvalidArgument(
                    "cannot reach broker at %s: %s" % (self._broker, e)
                ) from None
            try:
                sock.send(payload, zmq.NOBLOCK)
            except zmq.Again:
                return None
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            if monitor is not None:
                poller.register(monitor, zmq.POLLIN)
            deadline = time.monotonic() + timeout
            silent = 0
            while True:
                left = deadline - time.monotonic()
                ready = dict(poller.poll(max(1, int(math.ceil(left * 1000)))))
                if sock in ready:
                    return sock.recv_multipart()
                if monitor is not None and monitor in ready:
                    event = zmq.utils.monitor.parse_monitor_message(monitor.recv_multipart())
                    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                        silent += 1  # one may be a broker killed mid-handshake
                        continue
                    raise errors.BrokerRefused(self._refusal(event["event"], event["value"]))
                if time.monotonic() >= deadline:
                    if silent >= 3:
                        raise errors.BrokerRefused(
                            "no reply from broker at %s: its CurveZMQ handshakes ended without "
                            "a reason; is the broker key given (broker_key, FARMHAND_BROKER_KEY) "
                            "that broker's?" % self._broker)
                    return None
        finally:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(linger=0)
            sock.close(linger=0)

    def _refusal(self, event, value):
        """One line for a handshake the broker ended, naming what to fix."""
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return ("broker at %s refused this client's key (CurveZMQ, status %d): its public key "
                    "must be in the broker's client_authorized_keys_dir (then SIGHUP farmhandd)"
                    % (self._broker, value))
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return ("broker at %s does not take CurveZMQ clients on that endpoint: give no broker "
                    "key (broker_key, FARMHAND_BROKER_KEY), or check the endpoint" % self._broker)
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return ("CurveZMQ handshake with broker at %s failed: the broker key given (broker_key, "
                    "FARMHAND_BROKER_KEY) is not that broker's" % self._broker)
        return "handshake with broker at %s failed (ZMTP error 0x%x)" % (self._broker, value)

    def _call(self, request, body, resend, timeout=None):
        """Round trips until a reply or the timeout; returns the reply's ``body``.

        A resendable request is sent again, unchanged, after half the timeout
        (at least a second) without a reply.
        """
        timeout = self._timeout if timeout is None else _check_timeout(timeout)
        request.version = PROTOCOL_VERSION
        # Zero would look like an unset field on the wire.
        request_id = 0
        while request_id == 0:
            request_id = secrets.randbits(64)
        request.request_id = request_id
        payload = request.SerializeToString()

        per_try = max(_MIN_RESEND_AFTER_S, timeout / 2) if resend else timeout
        deadline = time.monotonic() + timeout
        while True:
            started = time.monotonic()
            remaining = deadline - started
            if remaining <= 0:
                raise errors.BrokerUnreachable(self._unreachable_reason(timeout))
            frames = self._round_trip(payload, min(remaining, per_try))
            if frames is not None:
                break
            if not resend:
                raise errors.BrokerUnreachable(self._unreachable_reason(timeout))
            # A try that failed without waiting (no send) must not spin.
            if time.monotonic() - started < _MIN_TRY_S:
                time.sleep(_MIN_TRY_S)

        if len(frames) != 1:
            raise errors.Corrupt(
                "malformed reply from broker at %s (%d frames)" % (self._broker, len(frames))
            )
        reply = pb.ClientReply()
        try:
            reply.ParseFromString(frames[0])
        except DecodeError:
            raise errors.Corrupt(
                "malformed reply from broker at %s (not a ClientReply)" % self._broker
            ) from None
        if reply.request_id != request_id:
            raise errors.Corrupt(
                "broker answered request %d instead of %d" % (reply.request_id, request_id)
            )
        if not reply.ok:
            raise errors.error_for(reply.error_code, reply.error or "broker refused the request")
        got = reply.WhichOneof("body")
        if got != body:
            raise errors.Corrupt(
                "unexpected reply from broker (%s body for a %s request)" % (got or "no", body)
            )
        return getattr(reply, body)
