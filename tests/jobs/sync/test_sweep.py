"""Issue 8 item 14: raw events a failed chain left `pending` are normalized by the pending sweep;
rows an active job covers are not enqueued twice, and sweeps do not pile up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils.module_loading import import_string
from django_q.models import Schedule

from contacts.models import InteractionParticipant
from google_emulator.generator import generate_mailbox
from jobs.enqueue import enqueue
from jobs.models import Interaction, Job, JobStatus, RawEvent
from jobs.pipeline import STAGES
from jobs.runner import run_due_jobs, run_job
from jobs.schedules import PENDING_SWEEP, ensure_schedules, wanted_schedules
from jobs.services import job_cancel
from jobs.sync.raw_events import RawItem, raw_events_upsert
from jobs.sync.sweep import raw_events_stale_pending_count, sweep_pending_raw_events
from timeline.models import TimelineEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline(pipeline_config):
    pipeline_config(
        handoff="none",
        initial_window_days=3650,
        gmail_chunk_pause_s=0.0,
        gmail_quota_units_per_user_per_minute=1_200_000,
    )


def age(user_id: int, minutes: float) -> None:
    """Make the user's raw events look written `minutes` ago."""
    RawEvent.objects.filter(user_id=user_id).update(
        updated_at=F("updated_at") - timedelta(minutes=minutes)
    )


def store(user_id: int, provider: str, n: int) -> uuid.UUID:
    batch = uuid.uuid4()
    items = [RawItem(f"{provider}-{i}", None, {"id": f"{provider}-{i}"}) for i in range(n)]
    raw_events_upsert(
        user_id=user_id, account_id=None, provider=provider, batch_id=batch, items=items
    )
    return batch


def test_item14_a_failed_sync_chains_pending_raw_events_are_normalized_by_the_sweep(
    google_account, emulator, pipeline_config
):
    pipeline_config(gmail_chunk_size=20, job_max_attempts=1, google_request_retries=0)
    # Two chunks get through, then every messages.get fails: the run that stored 40 continues
    # the chain (a run that made progress spends no attempt), and the continuation, storing
    # nothing, fails: the chain fails after storing 40.
    emulator.faults.add("gmail.users.messages.get", status=500, after=40)
    payload = {"account_id": google_account.pk}
    sync = enqueue("gmail_sync", user=google_account.user_id, payload=payload)
    run_job(sync.pk)
    run_due_jobs(kinds=["gmail_sync"], until_empty=True)
    emulator.faults.clear()

    chain = list(Job.objects.filter(kind="gmail_sync").order_by("pk"))
    assert [j.status for j in chain] == [JobStatus.SUCCEEDED, JobStatus.FAILED]
    assert "interruptedBy" in chain[0].metrics["details"]
    stored = RawEvent.objects.filter(user_id=google_account.user_id, status="pending").count()
    assert stored == 40
    assert not Job.objects.filter(kind="normalize_gmail").exists()

    # Fresh rows are left alone: a chain may still be about to normalize them.
    assert sweep_pending_raw_events() == 0
    assert raw_events_stale_pending_count() == 0

    age(google_account.user_id, minutes=10)
    assert raw_events_stale_pending_count(user_id=google_account.user_id) == 40
    assert sweep_pending_raw_events() == 1
    job = Job.objects.get(kind="normalize_gmail")
    assert job.payload["only_batch"] is False
    assert job.dedupe_key == f"normalize_gmail:sweep:{google_account.user_id}"

    run_due_jobs(kinds=["normalize_gmail"], until_empty=True)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert not RawEvent.objects.filter(status="pending").exists()
    assert Interaction.objects.filter(user_id=google_account.user_id).count() == 40
    assert raw_events_stale_pending_count() == 0
    assert sweep_pending_raw_events() == 0


def test_item14_rows_an_active_job_covers_are_not_enqueued_again(user, other_user):
    store(user.pk, "gmail", 5)
    store(user.pk, "calendar", 3)
    store(other_user.pk, "gmail", 2)
    age(user.pk, minutes=10)
    age(other_user.pk, minutes=10)
    # ada's Gmail rows are covered by a normalize job already queued (of some batch).
    active = enqueue("normalize_gmail", user=user, payload={"only_batch": False})
    # bob's Gmail sync is still running and writing.
    writing = enqueue("gmail_sync", user=other_user, payload={"account_id": 1})
    Job.objects.filter(pk=writing.pk).update(status=JobStatus.RUNNING)

    assert sweep_pending_raw_events() == 1  # only ada's calendar rows
    swept = Job.objects.exclude(pk__in=[active.pk, writing.pk]).get()
    assert (swept.kind, swept.user_id) == ("normalize_calendar", user.pk)
    assert raw_events_stale_pending_count() == 10

    # A second sweep while that job waits adds nothing.
    assert sweep_pending_raw_events() == 0
    assert Job.objects.count() == 3

    # Once the covering jobs end, their users' rows are swept.
    Job.objects.filter(pk__in=[active.pk, writing.pk]).update(status=JobStatus.FAILED)
    assert sweep_pending_raw_events() == 2
    assert set(
        Job.objects.filter(dedupe_key__contains=":sweep:").values_list("kind", "user_id")
    ) == {
        ("normalize_calendar", user.pk),
        ("normalize_gmail", user.pk),
        ("normalize_gmail", other_user.pk),
    }


def test_item14_the_sweep_runs_on_its_own_schedule(pipeline_config):
    pipeline_config(pending_sweep_interval_minutes=3)

    wanted = wanted_schedules()[PENDING_SWEEP]
    ensure_schedules()

    assert import_string(wanted["func"]) is sweep_pending_raw_events
    schedule = Schedule.objects.get(name=PENDING_SWEEP)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (wanted["func"], "I", 3)


# --- people stages after a sweep; what counts as covering ----------------------------------

MBOX_OWNER = "ada@gmail.example"


def write_mbox(path: Path, messages: int) -> Path:
    """A Takeout-style mbox of `messages` generated messages (a 'From ' line each)."""
    generated = generate_mailbox(
        MBOX_OWNER, messages=messages, events=0, seed=5, now=datetime(2025, 3, 1, tzinfo=UTC)
    )
    with path.open("wb") as handle:
        for message in generated.messages:
            body = b"\n".join(
                b">" + line if line.startswith(b"From ") else line
                for line in message.raw.replace(b"\r\n", b"\n").split(b"\n")
            )
            handle.write(b"From 1790000000000000000@xxx Sat Mar 01 12:00:00 +0000 2025\n")
            handle.write(b"X-Gmail-Labels: Inbox\n" + body + b"\n\n")
    return path


def test_fixa_item1_mail_the_sweep_normalizes_gets_contacts_participants_and_timeline(
    user, tmp_path
):
    mbox = write_mbox(tmp_path / "mail.mbox", messages=30)
    call_command(
        "import_mbox",
        "ada",
        str(mbox),
        "--address",
        MBOX_OWNER,
        stdout=StringIO(),
        stderr=StringIO(),
    )
    # The import's own normalization never runs: its rows are left to the sweep.
    (queued,) = Job.objects.filter(kind="normalize_gmail")
    job_cancel(job_ids=[queued.pk])
    age(user.pk, minutes=10)

    assert sweep_pending_raw_events() == 1
    run_due_jobs(until_empty=True)

    swept = Job.objects.get(kind="normalize_gmail", dedupe_key__contains=":sweep:")
    assert swept.status == JobStatus.SUCCEEDED
    interactions = Interaction.objects.filter(user=user)
    assert interactions.count() == 30
    # the sweep's batch now holds the rows it normalized, so its later stages see them
    assert set(RawEvent.objects.filter(user=user).values_list("batch_id", flat=True)) == {
        swept.batch_id
    }
    stages = {j.kind: j for j in Job.objects.filter(batch_id=swept.batch_id)}
    assert {"extract_contacts", "write_timeline", "update_rollups"} <= set(stages)
    assert {stages[k].status for k in ("extract_contacts", "write_timeline", "update_rollups")} == {
        JobStatus.SUCCEEDED
    }
    assert stages["extract_contacts"].metrics["itemsFetched"] == 30
    participants = InteractionParticipant.objects.filter(user=user)
    assert participants.count() == stages["extract_contacts"].metrics["itemsInserted"] > 30
    # (newsletters and the like are excluded by rule: most mails, not all, have participants)
    with_people = interactions.filter(pk__in=participants.values("interaction_id")).count()
    assert with_people >= 20
    events = TimelineEvent.objects.filter(user=user).count()
    assert events == stages["write_timeline"].metrics["itemsInserted"] >= with_people
    assert stages["write_timeline"].metrics["itemsFetched"] == 30


def test_fixa_item1_a_batch_normalization_leaves_other_batches_rows_alone(user):
    mine = store(user.pk, "gmail", 3)
    other = uuid.uuid4()
    items = [RawItem(f"other-{i}", None, {"id": f"other-{i}"}) for i in range(2)]
    raw_events_upsert(
        user_id=user.pk, account_id=None, provider="gmail", batch_id=other, items=items
    )
    job = enqueue("normalize_gmail", user=user, batch_id=mine, dedupe_key="n:mine")
    run_job(job.pk)

    rows = RawEvent.objects.filter(user=user)
    # (the test payloads do not parse: every row of the batch is done, as failed)
    assert set(rows.filter(batch_id=mine).values_list("status", flat=True)) == {"failed"}
    assert rows.filter(batch_id=mine).count() == 3
    assert set(rows.filter(batch_id=other).values_list("status", flat=True)) == {"pending"}
    assert rows.filter(batch_id=other).count() == 2


@pytest.mark.parametrize("provider", ["gmail", "calendar"])
def test_fixa_item2_an_active_backfill_covers_its_providers_rows(user, provider):
    store(user.pk, provider, 4)
    age(user.pk, minutes=10)
    writers = [kind for kind, following in STAGES.items() if f"normalize_{provider}" in following]
    assert f"{provider}_backfill" in writers  # what the sweep must count as covering
    backfill = enqueue(f"{provider}_backfill", user=user, payload={"account_id": 1})
    Job.objects.filter(pk=backfill.pk).update(status=JobStatus.RUNNING)

    assert sweep_pending_raw_events() == 0
    assert not Job.objects.filter(kind__startswith="normalize_").exists()

    # a backfill waiting for its next run (queued, retrying) is still writing
    Job.objects.filter(pk=backfill.pk).update(status=JobStatus.QUEUED)
    assert sweep_pending_raw_events() == 0

    Job.objects.filter(pk=backfill.pk).update(status=JobStatus.SUCCEEDED)
    assert sweep_pending_raw_events() == 1
    assert Job.objects.get(kind=f"normalize_{provider}").payload["only_batch"] is False
