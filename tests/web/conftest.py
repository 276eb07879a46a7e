"""Fixtures for the web monitor's browser tests: a real farmhandd serving HTTP on
a free loopback port, a standalone worker to kill, and headless Chromium driven
by Selenium (Debian's chromium, chromium-driver, python3-selenium).

Run by ctest (tests/web/CMakeLists.txt) with FARMHAND_BIN_DIR=BUILD/bin and
FARMHAND_TEST_ARTIFACTS=BUILD/test-artifacts/web (screenshots), or by hand:

    FARMHAND_BIN_DIR=build/bin /usr/bin/python3 -m pytest tests/web

Everything the broker starts carries a marker variable in its environment and
is killed at teardown, like tests/python/conftest.py.
"""

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
MARKER = "FARMHAND_WEBTEST_FARM"
TOKEN_USER = "wrangler"
TOKEN = "monitor-test-token-0123456789"
READY_TIMEOUT_S = 60.0


def bin_dir():
    env = os.environ.get("FARMHAND_BIN_DIR")
    return Path(env) if env else REPO / "build" / "bin"


def artifacts_dir():
    env = os.environ.get("FARMHAND_TEST_ARTIFACTS")
    path = Path(env) if env else REPO / "build" / "test-artifacts" / "web"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _marked_processes(value):
    needle = b"\0%s=%s\0" % (MARKER.encode(), value.encode())
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
            continue
        if needle in env and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


class Farm:
    """farmhandd with one local worker, HTTP on 127.0.0.1:0 and a tokens file."""

    def __init__(self, local_workers=1):
        self.local_workers = local_workers
        # ipc:// paths must fit in sockaddr_un: a short directory under /tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="fhweb", dir="/tmp"))
        self.client_endpoint = "ipc://%s/client.ipc" % self.dir
        self.worker_endpoint = "ipc://%s/worker.ipc" % self.dir
        self.log_path = self.dir / "farmhandd.log"
        self.url = None
        self.proc = None
        self.workers = []
        (self.dir / "tokens").write_text("%s %s\n" % (TOKEN_USER, TOKEN))
        (self.dir / "farmhand.yaml").write_text(
            "log_level: info\n"
            "broker:\n"
            "  client_endpoint: %s\n"
            "  worker_endpoint: %s\n"
            "  worker_curve: false\n"
            "  heartbeat_interval_s: 0.2\n"
            "  heartbeat_liveness: 3\n"
            "  retry_backoff_base_s: 0.1\n"
            "  retry_backoff_max_s: 0.2\n"
            "  default_max_attempts: 1\n"
            "http:\n"
            "  tokens_file: %s\n"
            "local_workers:\n"
            "  count: %d\n"
            "  slots: 2\n"
            "commands:\n"
            "  \"true\":\n"
            "    argv: [/bin/true]\n"
            "  fail:\n"
            "    argv: [/bin/sh, -c, 'echo render exploded >&2; exit 1']\n"
            "  sleep:\n"
            "    argv: [/bin/sleep, \"{seconds}\"]\n"
            "    params:\n"
            "      seconds: { pattern: '^[0-9]+$', default: \"1\" }\n"
            "rules:\n"
            "  - name: review\n"
            "    match: { path: \"*.exr\", kind: sequence }\n"
            "    jobs:\n"
            "      thumb: { kind: thumbnail, output: \"%s/thumbs/{name}.jpg\", size: 128x0 }\n"
            % (self.client_endpoint, self.worker_endpoint, self.dir / "tokens", local_workers, self.dir)
        )

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("FARMHAND_BROKER", "FARMHAND_TIMEOUT", "TMPDIR", MARKER)}
        env[MARKER] = str(self.dir)
        env["TMPDIR"] = str(self.dir)
        return env

    def start(self):
        binary = bin_dir() / "farmhandd"
        if not binary.exists():
            raise RuntimeError("%s does not exist (set FARMHAND_BIN_DIR)" % binary)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "--config", str(self.dir / "farmhand.yaml"),
                 "--state-dir", str(self.dir / "state"), "--local-workers", str(self.local_workers),
                 "--http", "127.0.0.1:0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("farmhandd exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            m = re.search(r"http listening url=(\S+)", self.log_path.read_text(errors="replace"))
            if m and (not self.local_workers or self.worker_alive("local-1")):
                self.url = m.group(1).rstrip("/")
                return self
            time.sleep(0.05)
        raise RuntimeError("farmhandd not ready within %g s:\n%s" % (READY_TIMEOUT_S, self.log_tail()))

    def cli(self, *args, check=True):
        done = subprocess.run([str(bin_dir() / "farmhand"), "--broker", self.client_endpoint, *args],
                              capture_output=True, text=True, timeout=60, env=self.env())
        if check and done.returncode != 0:
            raise RuntimeError("farmhand %s: exit %d: %s" % (" ".join(args), done.returncode, done.stderr))
        return done

    def submit(self, *args):
        out = self.cli("submit", *args).stdout
        m = re.search(r"\d+", out)
        assert m, "no job id in %r" % out
        return int(m.group(0))

    def worker_alive(self, name):
        done = self.cli("workers", "--json", check=False)
        return done.returncode == 0 and re.search(r'"name":\s*"%s"[^}]*?"alive":\s*true' % re.escape(name),
                                                  done.stdout) is not None

    def start_worker(self, name):
        """A standalone farmhand-worker on the worker endpoint (no CURVE: worker_curve: false)."""
        log = open(self.dir / ("worker-%s.log" % name), "ab")
        proc = subprocess.Popen(
            [str(bin_dir() / "farmhand-worker"), "--broker", self.worker_endpoint, "--name", name,
             "--slots", "1", "--work-dir", str(self.dir / ("work-" + name))],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
            start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        self.workers.append(proc)
        return proc

    def log_tail(self, lines=60):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def stop(self):
        for w in self.workers:
            if w.poll() is None:
                w.kill()
            w.wait()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 5.0
        while True:
            strays = _marked_processes(str(self.dir))
            if not strays or time.monotonic() > deadline:
                break
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def farm(request):
    f = Farm()
    failed_before = request.session.testsfailed
    try:
        f.start()
        yield f
    finally:
        if request.session.testsfailed != failed_before:
            print("\n---- farmhandd log (tail)\n%s\n----" % f.log_tail(), file=sys.stderr)
        f.stop()


def make_browser(width=1400, height=1000):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=%d,%d" % (width, height)):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = make_browser()
    try:
        yield driver
    finally:
        driver.quit()
