"""Issue 8 item 10: `qcluster` stops when SIGTERM reaches its whole process group, within the
grace period, leaving no process behind; the systemd unit in docs/DEPLOYMENT.md stops cleanly."""

from __future__ import annotations

import configparser
import multiprocessing
import os
import re
import signal
import subprocess
import time
import uuid
from contextlib import AbstractContextManager
from multiprocessing import Event, Value

import psutil
import pytest

from jobs.config import PipelineConfig
from jobs.enqueue import enqueue
from jobs.management.commands.qcluster import ParentStoppedSentinel, _ignore_sigterm
from jobs.models import Job, JobStatus
from tests.cluster import qcluster, wait_until
from tests.conftest import REPO_ROOT
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The grace period for a busy cluster (short, to keep the test short), and for an idle one
# (long, so a loaded machine cannot fail it: idle workers do not wait it out anyway).
GRACE_S = 4.0
IDLE_GRACE_S = 20.0


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def cluster(grace_s: float = GRACE_S) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`manage.py qcluster` in its own session (its pid is its process group), stopped by the
    test itself; whatever is left of it is killed."""
    return qcluster(stop=False, cluster_stop_grace_s=grace_s)


def stop_time(proc: subprocess.Popen[bytes], *, limit: float) -> float:
    began = time.monotonic()
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"qcluster still running {limit:.0f}s after SIGTERM") from None
    return time.monotonic() - began


def test_item10_a_group_sigterm_stops_the_cluster_within_the_grace_period(user):
    job = enqueue("record", user=user)
    with cluster(IDLE_GRACE_S) as proc:
        wait_until(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
            timeout=60,
            what="the cluster to run a job",
        )
        assert len(group_members(proc.pid)) >= 5  # parent, sentinel, 2 workers, pusher, monitor

        os.killpg(proc.pid, signal.SIGTERM)  # what `timeout` and `kill -- -PGID` do

        stop_time(proc, limit=IDLE_GRACE_S)
        assert proc.returncode == 0
        assert group_members(proc.pid) == []


def systemd_unit() -> configparser.ConfigParser:
    text = (REPO_ROOT / "docs" / "DEPLOYMENT.md").read_text()
    (block,) = re.findall(r"```ini\n(.*?)```", text, flags=re.DOTALL)
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(block)
    return unit


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value.strip())
    assert match, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


def test_item10_the_documented_systemd_unit_stops_a_busy_cluster_before_its_timeout(user):
    service = systemd_unit()["Service"]
    assert service["ExecStart"].endswith("manage.py qcluster")
    # The unit stops as systemd does by default: SIGTERM to every process of the cgroup.
    assert service.get("KillMode", "control-group") == "control-group"
    kill_signal = getattr(signal, service.get("KillSignal", "SIGTERM"))
    timeout_stop = seconds(service["TimeoutStopSec"])
    default_grace = PipelineConfig().cluster_stop_grace_s
    assert default_grace + 10 <= timeout_stop  # the cluster exits before systemd's SIGKILL

    busy = enqueue("record", user=user, payload={"sleep_s": 120})
    with cluster() as proc:
        wait_until(
            lambda: Execution.objects.filter(job_id=busy.pk, phase="started").exists(),
            timeout=60,
            what="a long task to start",
        )
        # KillMode=control-group: systemd signals each process of the unit in turn, in no
        # promised order; children before the parent is the order django-q2 cannot survive.
        for pid in sorted(group_members(proc.pid), reverse=True):
            os.kill(pid, kill_signal)

        took = stop_time(proc, limit=min(timeout_stop, GRACE_S + 20))
        assert proc.returncode == 0
        assert GRACE_S - 0.5 <= took < GRACE_S + 10  # the task had its grace period, no more
        assert group_members(proc.pid) == []
    # The killed task keeps its lease; tick hands it out again once the lease expires.
    assert Job.objects.get(pk=busy.pk).status == JobStatus.RUNNING


def _stubborn(ready) -> None:  # type: ignore[no-untyped-def]
    """A worker stuck in its task, with the SIGTERM handling our Sentinel gives its children."""
    signal.signal(signal.SIGTERM, _ignore_sigterm)
    ready.set()
    time.sleep(60)


def test_item10_a_worker_past_its_timeout_is_still_killed():
    """Workers ignore SIGTERM now; the guard's hard-timeout kill must still end them."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # Sentinel.__init__ sets this process's handlers; put them back
        sentinel = ParentStoppedSentinel(Event(), Event(), uuid.uuid4(), start=False)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    stuck = context.Process(target=_stubborn, args=(ready,))
    stuck.timer = Value("f", 0)  # type: ignore[attr-defined] # what the guard sees at timeout
    stuck.start()
    assert ready.wait(10)
    sentinel.pool.append(stuck)
    try:
        sentinel.reincarnate(stuck)
        stuck.join(5)
        assert stuck.exitcode == -signal.SIGKILL
        (replacement,) = sentinel.pool
        assert replacement.is_alive()
    finally:
        for __ in sentinel.pool:
            sentinel.task_queue.put("STOP")
        for process in sentinel.pool:
            process.join(10)
        if stuck.is_alive():
            stuck.kill()
