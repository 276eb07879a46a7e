"""CurveZMQ on the client port: the Python client with and without an authorised key."""

import subprocess
import time

import pytest

import farmhand
from conftest import Cluster, bin_dir


def keygen(prefix):
    done = subprocess.run([str(bin_dir() / "farmhand"), "admin", "keygen", str(prefix)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return prefix


def test_only_an_authorised_key_reaches_a_curve_client_port(tmp_path):
    keys = tmp_path / "keys"
    (keys / "clients").mkdir(parents=True)
    keygen(keys / "broker")
    keygen(keys / "clients" / "alice")
    keygen(keys / "mallory")
    broker_key = "@%s" % (keys / "broker.pub")
    (tmp_path / "farm").mkdir()
    cluster = Cluster(
        tmp_path / "farm", local_workers=1, slots=1,
        broker_yaml="  client_curve_secret_key_file: %s\n  client_authorized_keys_dir: %s\n"
        % (keys / "broker.key", keys / "clients"),
        client_keys=(broker_key, str(keys / "clients" / "alice.key")),
    )
    try:
        cluster.start()  # waits through an authorised client
        with cluster.client() as alice:
            job = alice.submit("noop", tasks=3)
            assert alice.wait(job, timeout=60).state == "succeeded"

        # Refused, and told so at once (not after the timeout); still a
        # BrokerUnreachable for hooks that catch that.
        intruder = farmhand.Client(cluster.endpoint, timeout=60, broker_key=broker_key,
                                   key_file=str(keys / "mallory.key"))
        with pytest.raises(farmhand.BrokerRefused, match="refused this client's key") as refused:
            intruder.jobs()
        assert isinstance(refused.value, farmhand.BrokerUnreachable)
        assert "client_authorized_keys_dir" in str(refused.value)
        with pytest.raises(farmhand.BrokerRefused):
            intruder.wait(1, timeout=60)
        intruder.close()
        # A broker key that is not this broker's: the handshakes just end; at
        # the timeout the client names the key.
        keygen(keys / "other-broker")
        astray = farmhand.Client(cluster.endpoint, timeout=2, broker_key="@%s" % (keys / "other-broker.pub"),
                                 key_file=str(keys / "clients" / "alice.key"))
        with pytest.raises(farmhand.BrokerRefused, match="is the broker key given"):
            astray.jobs()
        astray.close()
        plain = farmhand.Client(cluster.endpoint, timeout=1, broker_key="", key_file="")
        with pytest.raises(farmhand.BrokerUnreachable):
            plain.jobs()
        plain.close()
        deadline = time.monotonic() + 30
        while "not authorised (client port)" not in cluster.log_path.read_text():
            assert time.monotonic() < deadline, cluster.log_tail()
            time.sleep(0.05)

        with pytest.raises(farmhand.InvalidArgument):
            farmhand.Client(cluster.endpoint, broker_key=broker_key, key_file="")
        with pytest.raises(farmhand.InvalidArgument):
            farmhand.Client(cluster.endpoint, broker_key="not-a-key",
                            key_file=str(keys / "mallory.key"))
    finally:
        cluster.stop()
