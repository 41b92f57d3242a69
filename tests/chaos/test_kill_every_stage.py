"""Issue 12 item 1: kill -9 during every stage of the pipeline, then start a new cluster.

A real `manage.py qcluster` syncs a generated mailbox from the Google emulator (a real HTTP
server) through the whole chain. When the stage under test is running (for the stages that
write in chunks, once some but not all of its rows are committed), the cluster's whole process
group gets SIGKILL: main process, workers, everything, with no chance to record an outcome.
A new cluster is started, tick() returns the dead worker's lease (the schedule runs it once a
minute; the test runs it every second so recovery takes seconds), and the chain finishes.

Afterwards every emulator item is stored exactly once and every derived row exists exactly
once: the counts equal those of a run with nothing killed (once per session, in this process)
and the Gmail messages are exactly the emulator's; no job is left queued, running or retrying,
none failed; the killed attempt is in its job's error history ("lease expired").
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.db import close_old_connections
from django_q.models import Schedule

from contacts.models import InteractionParticipant
from google_emulator.server import GoogleEmulator
from jobs.models import Interaction, Job, JobStatus, RawEvent
from jobs.sync.enqueue import sync_enqueue
from search.models import Embedding
from tests.chaos import pipeline_world as world
from tests.cluster import qcluster, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

# Short leases: a lost attempt is returned cap + grace after its claim.
CAP_S = 6.0
GRACE_S = 1.0
PIPELINE = {
    "job_wall_clock_cap_s": CAP_S,
    "lease_grace_s": GRACE_S,
    # Small chunks (genuine settings), so a stage commits part of its work before the kill.
    "gmail_chunk_size": 25,
    # One lane, chunks of 1: a normalization of 50 events is 50 commits, so the kill lands
    # before its last one (with two lanes and chunks of 5 the whole stage took a few tens of
    # milliseconds once normalization got faster, and a 20 ms poll could miss it).
    "normalize_chunk_size": 1,
    "normalize_lanes": 1,
    "calendar_pause_every_items": 5,
    "calendar_pause_s": 0.1,
    # A job whose message the killed cluster had taken, unclaimed, is offered again by tick
    # after this (300 s by default).
    "reoffer_after_s": 2.0,
}
CLUSTER_ENV = {
    "CRM_PIPELINE_CONTACTS": json.dumps({"chunk_size": 10}),
    "CRM_PIPELINE_SEARCH": json.dumps({"embed_chunk_size": 10}),
}


def running(user_id: int, kind: str) -> Job | None:
    return Job.objects.filter(user_id=user_id, kind=kind, status=JobStatus.RUNNING).first()


def progress(kind: str, user_id: int) -> int:
    """The rows the stage has committed so far (0 for a stage that writes in one go)."""
    if kind == "gmail_sync":
        return RawEvent.objects.filter(user_id=user_id, provider="gmail").count()
    if kind == "calendar_sync":
        return RawEvent.objects.filter(user_id=user_id, provider="calendar").count()
    if kind == "normalize_gmail":
        return Interaction.objects.filter(user_id=user_id, source="gmail").count()
    if kind == "normalize_calendar":
        return Interaction.objects.filter(user_id=user_id, source="calendar").count()
    if kind == "extract_contacts":
        return InteractionParticipant.objects.filter(user_id=user_id).count()
    if kind == "embed":
        return Embedding.objects.filter(user_id=user_id).count()
    return 0


@dataclass(frozen=True)
class Stage:
    kind: str
    # progress -> whether to kill now (mid-chunk: some but not all of the stage's rows)
    ready: Callable[[int, dict], bool]
    # settings of the clusters that differ from PIPELINE for this case
    pipeline: dict = field(default_factory=dict)
    name: str = ""


def some_but_not_all(key: str) -> Callable[[int, dict], bool]:
    return lambda done, ref: 0 < done < ref[key]


STAGES = [
    Stage("gmail_sync", lambda done, ref: 0 < done < len(ref["gmailIds"])),
    Stage("calendar_sync", lambda done, ref: 0 < done < len(ref["calendarIds"])),
    Stage("normalize_gmail", lambda done, ref: 0 < done < len(ref["gmailIds"])),
    # the default of two lanes: the kill also takes a helper thread's chunk in flight
    Stage(
        "normalize_gmail",
        lambda done, ref: 0 < done < len(ref["gmailIds"]),
        pipeline={"normalize_lanes": 2},
        name="normalize_gmail-2-lanes",
    ),
    Stage("normalize_calendar", lambda done, ref: 0 < done < len(ref["calendarIds"])),
    Stage("extract_contacts", some_but_not_all("participants")),
    Stage("write_timeline", lambda done, ref: True),
    Stage("embed", some_but_not_all("embeddings")),
]


@pytest.mark.parametrize("stage", STAGES, ids=[s.name or s.kind for s in STAGES])
def test_kill_9_during_a_stage_loses_and_doubles_nothing(stage, settings, pipeline_config):
    Schedule.objects.all().delete()  # only what the test starts runs; it runs tick() itself
    pipeline_config(reoffer_after_s=PIPELINE["reoffer_after_s"])  # tick runs here
    started = time.monotonic()
    with GoogleEmulator(require_token=True, part_latency_s=0.01) as emulator:
        world.serve(emulator)
        settings.GOOGLE_API_ROOT = emulator.url
        settings.GOOGLE_TOKEN_URI = settings.GOOGLE_AUTH_URI = settings.GOOGLE_REVOKE_URI = ""
        ref = world.reference(emulator, pipeline_config)
        account = world.connect(emulator, "chaos")
        user_id = account.user_id
        env = {"GOOGLE_API_ROOT": emulator.url, **CLUSTER_ENV}

        pipeline = {**PIPELINE, **stage.pipeline}
        with qcluster(env=env, stop=False, **pipeline) as cluster:
            sync_enqueue(accounts=[account])
            victim: Job | None = None
            done = 0
            end = time.monotonic() + 120
            while victim is None:
                if running(user_id, stage.kind) is not None:
                    # Frozen first, then checked: nothing commits between the check and the kill
                    os.killpg(cluster.pid, signal.SIGSTOP)
                    job = running(user_id, stage.kind)
                    done = progress(stage.kind, user_id)
                    if job is not None and stage.ready(done, ref):
                        victim = job
                        break
                    os.killpg(cluster.pid, signal.SIGCONT)
                assert time.monotonic() < end, f"{stage.kind} never ran mid-way"
                assert cluster.poll() is None, "the cluster died on its own"
                time.sleep(0.01)
            worker_pid = int(victim.locked_by.rsplit(":", 1)[1])
            assert os.getpgid(worker_pid) == cluster.pid  # a worker of this cluster
            os.killpg(cluster.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            killed_wall = datetime.now(UTC)
            cluster.wait(timeout=10)
        wait_until(lambda: not _alive(worker_pid), timeout=10, what="the killed worker to die")
        victim.refresh_from_db()
        # Nobody recorded a thing: the row still says running, under the dead worker's lease.
        assert victim.status == JobStatus.RUNNING, f"{stage.kind} finished before the kill"

        with qcluster(env=env, **pipeline):
            returned = world.wait_idle_ticking(user_id, timeout=100)
            recovered_s = round(time.monotonic() - killed_at, 1)

        close_old_connections()
        victim.refresh_from_db()
        got = world.stored(user_id)
        result = world.outcome(user_id)
        figures = {
            "stage": stage.name or stage.kind,
            "messages": world.MESSAGES,
            "gmailItems": len(ref["gmailIds"]),
            "calendarItems": len(ref["calendarIds"]),
            "kills": 1,
            "progressAtKill": done,
            "leasesReturned": returned,
            "attemptsLost": len(result.lost),
            "victimAttempts": victim.attempts,
            # the lease (cap + grace from the claim), tick, the re-offer, the new claim
            "secondsKillToVictimRerun": round((victim.started_at - killed_wall).total_seconds(), 1),
            "secondsKillToIdle": recovered_s,
            "jobs": result.statuses,
            "totals": {key: got[key] for key in world.COUNTED},
            "referenceSeconds": ref["seconds"],
            "testSeconds": round(time.monotonic() - started, 1),
        }
        print("FIGURES: " + json.dumps(figures, sort_keys=True))

        # The lost attempt is in the victim's history, and the victim finished afterwards.
        assert victim.status == JobStatus.SUCCEEDED
        assert victim.attempts >= 2
        assert any("lease expired" in e["error"] for e in victim.errors), victim.errors
        assert victim.pk in {lost["id"] for lost in result.lost}
        assert returned >= 1
        # No job stuck or failed.
        assert result.statuses == {JobStatus.SUCCEEDED: sum(result.statuses.values())}
        # Every emulator item exactly once: the Gmail messages are the emulator's, the
        # calendar events the same as with nothing killed (each an event of the emulator's).
        assert got["gmailIds"] == sorted(world.expected_gmail_ids(emulator))
        assert got["calendarIds"] == ref["calendarIds"]
        calendar_ids = world.emulator_event_ids(emulator)
        assert all(
            source_id in calendar_ids or source_id.rsplit("_", 1)[0] in calendar_ids
            for source_id in got["calendarIds"]
        )
        # Every derived row exactly once: the counts of the run with nothing killed.
        assert {key: got[key] for key in world.COUNTED} == {key: ref[key] for key in world.COUNTED}
        assert got["rawByStatus"] == {"normalized": got["rawEvents"]}
        assert got["interactions"] == got["rawEvents"] == got["searchDocuments"]
        assert got["contactsWithoutIdentity"] == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for this purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
