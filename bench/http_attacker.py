#!/usr/bin/python3
"""Hostile HTTP clients for bench/farm.sh's `hostile` configuration.

Opens CONNS connections to HOST:PORT that each send the start of a request
and then one more header byte every few seconds (slowloris), and keeps a few
more sending 64 KB header lines and a request of a million headers' worth of
bytes, until killed. What it measures is not here: farm.sh compares the
broker's dispatch with and without it.
"""
import socket
import sys
import time


def open_slow(host: str, port: int) -> socket.socket:
    """A connection that has sent the start of a request and no more."""
    s = socket.create_connection((host, port), timeout=5)
    s.setblocking(False)
    s.send(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return s


def main() -> None:
    host, port, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    slow = []
    for _ in range(conns):
        try:
            slow.append(open_slow(host, port))
        except OSError:
            break  # the broker (or this process) ran out of descriptors: hold what we have
    print(f"holding {len(slow)} slow connections", flush=True)
    huge = b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 65536 + b"\r\n\r\n"
    while True:
        for s in list(slow):
            try:
                s.send(b"a")
            except OSError:
                slow.remove(s)
                try:
                    slow.append(open_slow(host, port))
                except OSError:
                    pass
        for _ in range(10):
            try:
                with socket.create_connection((host, port), timeout=2) as h:
                    h.sendall(huge)
            except OSError:
                pass
        time.sleep(2)


if __name__ == "__main__":
    main()
