"""Issue 9, one e-mail one event: the same messages from a Gmail API sync (the emulator, the real
client) and from a Takeout mbox import are linked, and their participants are counted once."""

from __future__ import annotations

import pytest

from contacts.models import InteractionDuplicate, InteractionParticipant
from jobs.models import Interaction, Job, RawEvent
from jobs.runner import run_due_jobs
from jobs.sync.enqueue import sync_enqueue
from jobs.sync.imports import mbox_import

pytestmark = pytest.mark.django_db

TAKEOUT = 25


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    # the fixture mailbox lies in early 2025: a window wide enough to hold it, no pacing
    pipeline_config(
        handoff="none",
        initial_window_days=3650,
        gmail_chunk_pause_s=0.0,
        gmail_quota_units_per_user_per_minute=10_000_000,
    )


def write_mbox(path, messages) -> None:
    with path.open("wb") as handle:
        for message in messages:
            body = b"\n".join(
                b">" + line if line.startswith(b"From ") else line
                for line in message.raw.replace(b"\r\n", b"\n").split(b"\n")
            )
            handle.write(b"From 1790000000000000000@xxx Sat Mar 01 12:00:00 +0000 2025\n")
            handle.write(b"X-Gmail-Labels: Inbox\n" + body + b"\n\n")


def test_same_message_id_from_takeout_and_api_counted_once(
    user, google_account, generated_mailbox, tmp_path
):
    sync_enqueue(accounts=[google_account], providers=["gmail"])
    run_due_jobs(until_empty=True)
    assert Job.objects.filter(kind="extract_contacts", status="succeeded").exists()
    api_interactions = Interaction.objects.filter(user=user).count()
    participants = set(
        InteractionParticipant.objects.filter(user=user).values_list(
            "interaction_id", "contact_id", "role"
        )
    )
    assert participants
    api_message_ids = set(
        Interaction.objects.filter(user=user).values_list("metadata__message_id", flat=True)
    )
    # messages the sync skipped (spam, trash, drafts) have no API copy
    expected = sum(
        1 for m in generated_mailbox.messages[:TAKEOUT] if m.message_id in api_message_ids
    )
    assert expected >= TAKEOUT - 3

    mbox = tmp_path / "takeout.mbox"
    write_mbox(mbox, generated_mailbox.messages[:TAKEOUT])
    result = mbox_import(account=google_account, path=mbox)
    run_due_jobs(until_empty=True)

    # both raw rows and both interactions stay; the Takeout copies point at the API ones
    imported = RawEvent.objects.filter(user=user, batch_id=result.batch_id)
    assert imported.count() == TAKEOUT
    assert Interaction.objects.filter(user=user).count() == api_interactions + TAKEOUT
    duplicates = InteractionDuplicate.objects.filter(user=user).select_related(
        "interaction", "canonical"
    )
    assert duplicates.count() == expected
    for dup in duplicates:
        assert dup.interaction.metadata["message_id"] == dup.canonical.metadata["message_id"]
        assert dup.canonical_id < dup.interaction_id
    (job,) = Job.objects.filter(kind="extract_contacts", batch_id=result.batch_id)
    assert job.metrics["details"]["duplicatesLinked"] == expected
    # the participants are those of the API sync, plus only those of messages it never had
    copies = set(duplicates.values_list("interaction_id", flat=True))
    assert not InteractionParticipant.objects.filter(interaction_id__in=copies).exists()
    after = set(
        InteractionParticipant.objects.filter(user=user).values_list(
            "interaction_id", "contact_id", "role"
        )
    )
    assert after >= participants
    takeout_only = {i for i, _, _ in after - participants}
    assert len(takeout_only) == TAKEOUT - expected
    assert job.metrics["itemsInserted"] == len(after - participants)
