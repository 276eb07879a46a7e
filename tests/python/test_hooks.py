"""Webhooks through the Python client: Client.hooks() shows a hook's outbox,
and what a python http.server receives verifies as the README says."""

import hashlib
import hmac
import http.server
import json
import threading
import time

import farmhand

RECEIVED = []


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        RECEIVED.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


_SERVER = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
threading.Thread(target=_SERVER.serve_forever, daemon=True).start()

SECRET = "py-secret"
CLUSTER_EXTRA_YAML = """hooks:
  - name: pipeline
    url: http://127.0.0.1:%d/farm
    secret: %s
    events: [job.succeeded]
""" % (_SERVER.server_address[1], SECRET)


def wait_for(pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_finished_job_is_delivered_signed_and_hooks_counts_it(client):
    job = client.submit("noop", tasks=1)
    assert wait_for(lambda: any(h.delivered == 1 for h in client.hooks()))
    (hook,) = client.hooks()
    assert isinstance(hook, farmhand.Hook)
    assert (hook.name, hook.events, hook.pending, hook.failed) == (
        "pipeline", ["job.succeeded"], 0, 0)
    assert hook.oldest_pending is None
    headers, body = RECEIVED[-1]
    # The README's check, as a receiver would write it.
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Farmhand-Signature"], expected)
    payload = json.loads(body)
    assert payload["event"] == headers["X-Farmhand-Event"] == "job.succeeded"
    assert payload["delivery_id"] == headers["X-Farmhand-Delivery"]
    assert payload["job"]["id"] == int(job)
    assert payload["job"]["state"] == "succeeded"
