"""Two normalizations of one batch each start the people and search stages, and neither's are lost.

A sync enqueues Gmail and Calendar in one batch; each provider's normalization, when done,
starts extract_contacts and embed for the batch, and extract_contacts starts write_timeline and
update_rollups. When the Calendar normalization finished while the batch's extract_contacts
(started by the Gmail one) was already running, with the batch's interactions read, the second
request used to be folded into the running job (one lane per batch): the Calendar interactions
were never extracted, so their people had no participants and no timeline (a clean-clone CI run
of the kill test lost 21 of 338 participants this way).

Here the Calendar chain runs, in another thread, while the Gmail side's extract_contacts is
running with its interactions read. Afterwards nothing is left undone: extracting or writing the
timeline of every interaction again adds nothing, and every interaction has its search document.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

import contacts.processors.extract_contacts as extract_processor
from contacts.models import InteractionParticipant
from contacts.services.extract import contacts_extract
from jobs.models import Interaction, Job, JobStatus
from jobs.runner import run_due_jobs
from jobs.sync.enqueue import sync_enqueue
from search.models import SearchDocument
from timeline.models import TimelineEvent
from timeline.services import timeline_events_write

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("wide_sync_config"),
]


def test_a_normalization_that_finishes_while_the_batch_is_being_extracted_is_not_lost(
    google_account, monkeypatch
):
    user_id = google_account.user_id
    sync_enqueue(accounts=[google_account], providers=("gmail", "calendar"))
    (batch,) = set(Job.objects.filter(user_id=user_id).values_list("batch_id", flat=True))
    run_due_jobs(kinds=["gmail_sync", "normalize_gmail"], until_empty=True)
    assert Interaction.objects.filter(user_id=user_id, source="calendar").count() == 0

    calendar_side: list[BaseException] = []
    real_extract = extract_processor.contacts_extract
    calls = []

    def extract_while_calendar_finishes(**kwargs):
        if not calls:
            # The first extract_contacts has read its interactions; the Calendar side of the
            # batch is synced and normalized now, in another worker.
            def calendar_chain() -> None:
                try:
                    run_due_jobs(kinds=["calendar_sync", "normalize_calendar"], until_empty=True)
                except BaseException as exc:  # reported below
                    calendar_side.append(exc)
                finally:
                    connection.close()

            worker = threading.Thread(target=calendar_chain)
            worker.start()
            worker.join(timeout=60)
            assert not worker.is_alive()
        calls.append(kwargs["interaction_ids"])
        return real_extract(**kwargs)

    monkeypatch.setattr(extract_processor, "contacts_extract", extract_while_calendar_finishes)
    run_due_jobs(kinds=["extract_contacts"], max_jobs=1)
    assert calendar_side == []
    calendar_ids = set(
        Interaction.objects.filter(user_id=user_id, source="calendar").values_list("id", flat=True)
    )
    assert calendar_ids, "the Calendar side normalized nothing"
    assert not calendar_ids & set(calls[0])  # the first run read the Gmail side only

    run_due_jobs(until_empty=True)

    jobs = Job.objects.filter(user_id=user_id, batch_id=batch)
    assert set(jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    every = list(Interaction.objects.filter(user_id=user_id).values_list("id", flat=True))
    # The Calendar interactions' people were extracted and their timeline written: doing it all
    # again finds nothing to add.
    assert InteractionParticipant.objects.filter(interaction_id__in=calendar_ids).exists()
    again = contacts_extract(user_id=user_id, interaction_ids=every)
    assert (again.inserted, again.updated, again.contacts_created) == (0, 0, 0)
    events = TimelineEvent.objects.filter(user_id=user_id).count()
    assert timeline_events_write(user_id=user_id, interaction_ids=every).inserted == 0
    assert TimelineEvent.objects.filter(user_id=user_id).count() == events
    assert SearchDocument.objects.filter(user_id=user_id).count() == len(every)
