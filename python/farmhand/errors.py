"""Exceptions of the farmhand client.

Every error the client raises is a FarmhandError. Its str() is the one-line,
lower-case reason the broker gave ("unknown job 42") or the client's own
("broker unreachable at tcp://127.0.0.1:7600 (no reply within 10 s)"), and its
``code`` is the broker's ErrorCode name (common/result.h): invalid_argument,
not_found, corrupt, io, timeout, crashed, cancelled, unavailable, internal.

One subclass per code, so a hook can catch exactly what it can handle. Where a
built-in exception means the same thing, the subclass derives from it too:
``except ValueError`` catches InvalidArgument, ``except LookupError`` catches
NotFound, ``except TimeoutError`` catches farmhand.TimeoutError and
``except ConnectionError`` catches Unavailable and BrokerUnreachable.
"""

import builtins

__all__ = [
    "FarmhandError",
    "InvalidArgument",
    "NotFound",
    "Corrupt",
    "IoError",
    "TimeoutError",
    "Crashed",
    "Cancelled",
    "Unavailable",
    "Internal",
    "BrokerUnreachable",
    "BrokerRefused",
    "JobFailed",
    "error_for",
]


class FarmhandError(Exception):
    """A request failed; ``reason`` is one line, ``code`` the ErrorCode name."""

    code = "internal"

    def __init__(self, reason, code=None):
        reason = " ".join(str(reason).split()) or "farmhand request failed"
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code

    def __str__(self):
        return self.reason

    def __repr__(self):
        return "%s(%r, code=%r)" % (type(self).__name__, self.reason, self.code)


class InvalidArgument(FarmhandError, ValueError):
    """The request was refused as malformed: bad params, frame set, template..."""

    code = "invalid_argument"


class NotFound(FarmhandError, LookupError):
    """The object named does not exist, e.g. "unknown job 42"."""

    code = "not_found"


class Corrupt(FarmhandError):
    """Data or a reply could not be read (e.g. a reply this client does not understand)."""

    code = "corrupt"


class IoError(FarmhandError):
    """A file or disk operation failed on the broker's side."""

    code = "io"


class TimeoutError(FarmhandError, builtins.TimeoutError):  # noqa: A001 (farmhand.TimeoutError)
    """Something did not finish in time, e.g. Client.wait(job, timeout=...)."""

    code = "timeout"


class Crashed(FarmhandError):
    code = "crashed"


class Cancelled(FarmhandError):
    code = "cancelled"


class Unavailable(FarmhandError, ConnectionError):
    """The broker, or something it needs, is not available."""

    code = "unavailable"


class Internal(FarmhandError):
    code = "internal"


class BrokerUnreachable(Unavailable):
    """No reply from the broker within the client's timeout (resends included)."""


class BrokerRefused(BrokerUnreachable):
    """The broker ended this client's CurveZMQ handshake: it does not admit
    the client's key, or the broker key given is not the broker's. Said at
    once when the broker says why; a BrokerUnreachable too (the broker cannot
    be used from here, and hooks that catch that go on working)."""

    code = "permission_denied"


class JobFailed(FarmhandError):
    """Client.wait(..., check=True): the job ended failed or cancelled.

    ``status`` is the job's final JobStatus.
    """

    code = "internal"

    def __init__(self, reason, status=None):
        super().__init__(reason, code="cancelled" if _is_cancelled(status) else "internal")
        self.status = status


def _is_cancelled(status):
    return status is not None and getattr(status, "state", "") == "cancelled"


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        Corrupt,
        IoError,
        TimeoutError,
        Crashed,
        Cancelled,
        Unavailable,
        Internal,
    )
}


def error_for(code, reason):
    """The exception for a broker reply with ok=false (an unknown code is Internal)."""
    cls = _BY_CODE.get(code or "", Internal)
    return cls(reason)
