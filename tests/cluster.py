"""A real `manage.py qcluster` subprocess for end-to-end tests, and waiting on what it does."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_reachable() -> bool:
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def qcluster(
    *,
    redis: bool = False,
    name: str | None = None,
    log_level: str | None = "INFO",
    stop: bool = True,
    env: dict[str, str] | None = None,
    **pipeline: object,
) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py qcluster` with two workers and the CRM_PIPELINE settings `pipeline`, in a
    session of its own (its pid is its process group), on Redis or the ORM broker; `name` gives
    it a cluster name of its own (no other cluster on the Redis server or database takes its
    messages). Its log is written to stderr when the block fails.

    On the way out, with `stop`: SIGTERM to the main process only (it stops its own workers in
    order), SIGKILL to its group after 20 s. Without `stop` (the test stops it itself): whatever
    is left of its group is killed at once. `env`: more environment variables (GOOGLE_API_ROOT
    of an emulator, say)."""
    extra = env or {}
    env = subprocess_env(CRM_PIPELINE=json.dumps(pipeline), Q_WORKERS="2", **extra)
    if log_level:
        env["Q_LOG_LEVEL"] = log_level
    if name:
        env["Q_CLUSTER_NAME"] = name
    if redis:
        env["REDIS_URL"] = REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this statement, closed below
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "qcluster"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    except BaseException:
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace")[-5000:])
        raise
    finally:
        if stop and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()
