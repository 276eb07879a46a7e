"""farmhand: the Python client of the farmhand broker, for publish hooks and scripts.

    import farmhand

    client = farmhand.Client()  # $FARMHAND_BROKER, else tcp://127.0.0.1:7600
    result = client.publish("/show/sh010/comp/sh010_comp_v003.####.exr",
                            meta={"project": "show", "shot": "sh010", "version": "3"},
                            event_id="show/sh010/comp/v003")
    job = client.submit("thumbnail", input="/show/sh010/comp/sh010_comp_v003.####.exr",
                        output="/show/sh010/thumbs/sh010.jpg", size=256)
    status = client.wait(job, timeout=60)
    print(status.state, status.last_error)

Errors are exceptions derived from farmhand.FarmhandError, whose str() is the
broker's one-line reason and whose ``code`` is its error code name.

The package needs the protobuf modules generated from proto/farmhand.proto at
build time: use it from the build tree (PYTHONPATH=BUILD/python) or installed.
"""

import importlib as _importlib

try:
    _importlib.import_module("farmhand.farmhand_pb2")
except ImportError as _error:  # pragma: no cover - a packaging mistake
    raise ImportError(
        "farmhand: the generated protobuf module farmhand.farmhand_pb2 is missing or does not "
        "import (%s); use the package from the build tree (PYTHONPATH=BUILD/python, built by "
        "cmake) or an installed copy, not python/ in the source tree" % _error
    ) from _error

from farmhand._protocol import PROTOCOL_VERSION
from farmhand.client import (
    DEFAULT_BROKER,
    DEFAULT_TIMEOUT_S,
    MEDIA_KINDS,
    Client,
    byte_size,
    random_key,
)
from farmhand.errors import (
    BrokerRefused,
    BrokerUnreachable,
    Cancelled,
    Corrupt,
    Crashed,
    FarmhandError,
    Internal,
    InvalidArgument,
    IoError,
    JobFailed,
    NotFound,
    TimeoutError,
    Unavailable,
)
from farmhand.models import (
    FINAL_JOB_STATES,
    JOB_STATES,
    TASK_STATES,
    ActionResult,
    AttemptStats,
    BlockedWorker,
    Event,
    Health,
    Job,
    JobId,
    JobStatus,
    JobUsage,
    Hook,
    HookDelivery,
    Limit,
    OpenJdSubmission,
    PublishResult,
    Share,
    TaskInfo,
    TaskLog,
    WorkerInfo,
)

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION",
    "DEFAULT_BROKER",
    "DEFAULT_TIMEOUT_S",
    "MEDIA_KINDS",
    "Client",
    "random_key",
    "byte_size",
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
    "BrokerRefused",
    "BrokerUnreachable",
    "JobFailed",
    "OpenJdSubmission",
    "JOB_STATES",
    "TASK_STATES",
    "FINAL_JOB_STATES",
    "JobId",
    "Job",
    "JobStatus",
    "TaskInfo",
    "AttemptStats",
    "JobUsage",
    "ActionResult",
    "WorkerInfo",
    "Share",
    "TaskLog",
    "PublishResult",
    "Event",
    "Health",
    "Hook",
    "HookDelivery",
    "Limit",
    "BlockedWorker",
]
