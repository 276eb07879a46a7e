"""pytest fixtures for the Python client: a real farmhandd with local workers.

Run by ctest (tests/python/CMakeLists.txt) with PYTHONPATH=BUILD/python and
FARMHAND_BIN_DIR=BUILD/bin, or by hand:

    PYTHONPATH=build/python FARMHAND_BIN_DIR=build/bin /usr/bin/python3 -m pytest tests/python

Like tests/support/cluster.cpp, a Cluster starts `farmhandd --config --state-dir
--local-workers` on ipc:// endpoints, waits until every local worker is alive,
and at teardown stops the broker (SIGTERM, then SIGKILL) and kills every process
that carries its marker variable in its environment (local workers, task
processes and their children), so nothing outlives a test. The broker also gets
PR_SET_PDEATHSIG, so it dies with a pytest that is killed.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import farmhand

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = Path(os.environ.get("FARMHAND_SOURCE_DIR") or REPO)
DATA_DIR = Path(os.path.abspath(SOURCE_DIR / ".." / "shared" / "data" / "openexr-images"))
BEACHBALL = DATA_DIR / "Beachball" / "singlepart.####.exr"

# Names a cluster's directory in the environment of everything it starts.
MARKER = "FARMHAND_PYTEST_CLUSTER"
STOP_GRACE_S = 10.0
READY_TIMEOUT_S = 60.0

COMMANDS_YAML = r"""
commands:
  "true":
    argv: [/bin/true]
  fail:
    argv: [/bin/false]
  echo_frame:
    argv: [/bin/echo, frame, "{frame}"]
  sleep:
    argv: [/bin/sleep, "{seconds}"]
    params:
      seconds: { pattern: '^[0-9]+(\.[0-9]+)?$', default: "1" }
"""


def bin_dir():
    env = os.environ.get("FARMHAND_BIN_DIR")
    return Path(env) if env else REPO / "build" / "bin"


def _die_with_parent():
    # PR_SET_PDEATHSIG (1): SIGKILL when pytest dies, whatever way it dies.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)


def _marked_processes(marker_value):
    needle = b"\0%s=%s\0" % (MARKER.encode(), marker_value.encode())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = b"\0" + f.read()
            with open("/proc/%s/stat" % entry, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or not ours
        if needle in env and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


class Cluster:
    """farmhandd with `local_workers` local workers, config and state in `work_dir`."""

    def __init__(self, work_dir, local_workers=2, slots=2, extra_yaml="", commands_yaml=None,
                 broker_yaml="", client_keys=None):
        self.work_dir = Path(work_dir)
        # ipc:// paths must fit in sockaddr_un (~107 bytes): pytest's tmp paths
        # can be longer, so sockets (and task logs, via TMPDIR) go in a short dir.
        self.run_dir = Path(tempfile.mkdtemp(prefix="fhpy", dir="/tmp"))
        self.endpoint = "ipc://%s/client.ipc" % self.run_dir
        self.worker_endpoint = "ipc://%s/worker.ipc" % self.run_dir
        self.local_workers = local_workers
        self.config_path = self.work_dir / "farmhand.yaml"
        self.state_dir = self.work_dir / "state"
        self.log_path = self.work_dir / "farmhandd.log"
        self.proc = None
        # CurveZMQ on the client port: (broker_key, key_file) for Client().
        self.client_keys = client_keys
        yaml = (
            "log_level: info\n"
            "broker:\n"
            "  client_endpoint: %s\n"
            "  worker_endpoint: %s\n"
            "  state_dir: %s\n"
            "  retry_backoff_base_s: 0.1\n"
            "  retry_backoff_max_s: 0.2\n"
            "  default_max_attempts: 2\n"
            "%s"
            "local_workers:\n"
            "  count: %d\n"
            "  slots: %d\n"
            % (self.endpoint, self.worker_endpoint, self.state_dir, broker_yaml, local_workers,
               slots)
        )
        yaml += COMMANDS_YAML if commands_yaml is None else commands_yaml
        yaml += extra_yaml
        self.config_path.write_text(yaml)

    def start(self):
        binary = bin_dir() / "farmhandd"
        if not binary.exists():
            raise RuntimeError("%s does not exist (set FARMHAND_BIN_DIR)" % binary)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("FARMHAND_BROKER", "FARMHAND_TIMEOUT", "TMPDIR", MARKER)
        }
        env[MARKER] = str(self.run_dir)
        env["TMPDIR"] = str(self.run_dir)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    "--config", str(self.config_path),
                    "--state-dir", str(self.state_dir),
                    "--local-workers", str(self.local_workers),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        expected = {"local-%d" % i for i in range(1, self.local_workers + 1)}
        client = self.client(timeout=1.0)
        deadline = time.monotonic() + timeout
        alive = set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "farmhandd exited with %s before it was ready:\n%s"
                    % (self.proc.returncode, self.log_tail())
                )
            try:
                alive = {w.name for w in client.workers() if w.alive}
                if expected <= alive:
                    return
            except farmhand.BrokerUnreachable:
                pass
            time.sleep(0.05)
        raise RuntimeError(
            "workers not all alive within %g s (alive: %s):\n%s"
            % (timeout, ", ".join(sorted(alive)) or "none", self.log_tail())
        )

    def client(self, timeout=10.0):
        broker_key, key_file = self.client_keys or ("", "")
        return farmhand.Client(self.endpoint, timeout=timeout, broker_key=broker_key,
                               key_file=key_file)

    def path(self, name):
        return self.work_dir / name

    def log_tail(self, lines=60):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no broker log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                print("cluster: farmhandd ignored SIGTERM; sending SIGKILL", file=sys.stderr)
                self.proc.kill()
                self.proc.wait()
        self._kill_strays()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _kill_strays(self):
        deadline = time.monotonic() + 5.0
        while True:
            strays = _marked_processes(str(self.run_dir))
            if not strays:
                return
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                print("cluster: stray processes survived SIGKILL: %s" % strays, file=sys.stderr)
                return
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """One broker with two local workers (two slots each) for a test module.

    A module may set CLUSTER_EXTRA_YAML (e.g. rules:) to extend the config;
    @WORK_DIR@ in it becomes the cluster's directory (Cluster.path("")).
    """
    work_dir = tmp_path_factory.mktemp("cluster")
    extra = getattr(request.module, "CLUSTER_EXTRA_YAML", "").replace("@WORK_DIR@", str(work_dir))
    c = Cluster(work_dir, local_workers=2, slots=2, extra_yaml=extra)
    failed_before = request.session.testsfailed
    try:
        c.start()
        yield c
    finally:
        c.stop()
        if request.session.testsfailed != failed_before:
            print("\n---- %s (tail)\n%s\n----" % (c.log_path, c.log_tail()), file=sys.stderr)


@pytest.fixture
def client(cluster):
    with cluster.client() as c:
        yield c


def run(args, **kwargs):
    """stdout of a command (the oracle tools), "" if it failed."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    return done.stdout if done.returncode == 0 else ""


def image_size(path):
    """'WxH' of an image according to oiiotool, "" if it cannot be read."""
    info = run(["oiiotool", "--info", str(path)])
    # "/path/thumb.jpg :  256 x  195, 3 channel, uint8 jpeg"
    _, _, rest = info.partition(" : ")
    parts = rest.replace(",", " ").split()
    if len(parts) >= 3 and parts[1] == "x":
        return "%sx%s" % (parts[0], parts[2])
    return ""


def video_frames(path):
    """Frames of a movie's first video stream, counted by decoding (ffprobe)."""
    out = run(
        [
            "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=nb_read_frames", "-of", "default=nokey=1:noprint_wrappers=1",
            str(path),
        ]
    )
    try:
        return int(out.strip())
    except ValueError:
        return -1
