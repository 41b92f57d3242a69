"""One user, two Google accounts subscribed to the same shared calendar: the same calendar id and
event ids reach the store through both accounts' syncs. Raw events are unique per user, provider
and source id ("<calendar id>/<event id>"), so each event is stored once, under whichever account
stored it first; nothing may be lost, reconciled twice into a false gap, or left unchecked when
one of the accounts goes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from google_emulator.generator import generate_mailbox
from google_emulator.server import GoogleEmulator
from jobs.google.accounts import google_account_connect, google_account_disconnect
from jobs.models import (
    GoogleAccount,
    Interaction,
    Job,
    RawEvent,
    ReconcileRun,
    ReconcileStatus,
)
from jobs.runner import run_due_jobs
from jobs.status import pipeline_status
from jobs.sync.enqueue import sync_enqueue
from tests.fixtures.accounts import CALENDAR_READONLY, GMAIL_READONLY
from tests.fixtures.calendar import meeting

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("wide_sync_config")]

FIRST = "first.account@pipeline.example"
SECOND = "second.account@pipeline.example"
SHARED = "c_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978@group.calendar.google.com"


@pytest.fixture(autouse=True)
def settled(wide_sync_config):
    # The shared events were created a moment ago: compare them all the same.
    wide_sync_config(reconcile_settle_minutes=0)


@pytest.fixture
def world(google_settings, user) -> Iterator[tuple[GoogleEmulator, GoogleAccount, GoogleAccount]]:
    """Two accounts of `user`, each with its own mailbox and primary calendar, both subscribed
    to SHARED (one calendar the emulator serves to both: the same ids for both)."""
    now = datetime.now(UTC)
    # Generated for different days: the emulator's ids (date plus order) do not collide.
    earlier = now - timedelta(days=1)
    with GoogleEmulator(require_token=True) as emu:
        first_box = emu.add_mailbox(
            FIRST, generate_mailbox(FIRST, messages=5, events=3, seed=41, days=20, now=now)
        )
        second_box = emu.add_mailbox(
            SECOND, generate_mailbox(SECOND, messages=5, events=3, seed=42, days=20, now=earlier)
        )
        shared = first_box.add_calendar(SHARED, "Northwind projects")
        second_box.subscribe_calendar(shared)
        for n in range(6):
            first_box.add_event(
                SHARED,
                meeting(
                    f"Project review {n}",
                    days=n - 2,
                    on_the_hour=True,
                    organizer={"email": SHARED, "displayName": "Northwind projects", "self": True},
                    attendees=[{"email": "dana@northwind.example", "responseStatus": "accepted"}],
                ),
            )
        google_settings.GOOGLE_API_ROOT = emu.url
        first, second = (
            google_account_connect(
                user=user,
                email=email,
                refresh_token=emu.register_account(email),
                scopes=[GMAIL_READONLY, CALENDAR_READONLY],
            )
            for email in (FIRST, SECOND)
        )
        yield emu, first, second


def sync_and_normalize(*accounts: GoogleAccount) -> None:
    sync_enqueue(accounts=list(accounts), providers=["calendar"])
    run_due_jobs(kinds=["calendar_sync", "calendar_backfill"], until_empty=True)
    run_due_jobs(kinds=["normalize_calendar"], until_empty=True)
    assert not Job.objects.filter(status__in=["failed", "cancelled"]).exists()


def reconcile(*accounts: GoogleAccount) -> dict[str, ReconcileRun]:
    for account in accounts:
        call_command(
            "reconcile",
            "ada",
            "--account",
            account.email,
            "--provider",
            "calendar",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    return {
        account.email: ReconcileRun.objects.filter(account=account, provider="calendar").latest(
            "id"
        )
        for account in accounts
    }


def shared_rows(user_id: int):
    return RawEvent.objects.filter(user_id=user_id, source_id__startswith=f"{SHARED}/")


def test_a_shared_calendar_is_stored_once_and_complete_for_both_accounts(world, user):
    _, first, second = world

    sync_and_normalize(first, second)

    rows = shared_rows(user.pk)
    assert rows.count() == 6
    assert set(rows.values_list("account_id", flat=True)) == {first.pk}
    meetings = Interaction.objects.filter(user=user, source_id__startswith=f"{SHARED}/")
    assert meetings.count() == 6
    runs = reconcile(first, second)
    for run in runs.values():
        assert run.status == ReconcileStatus.OK, run.detail
        assert (run.missing_count, run.extra_count) == (0, 0)
    # Each account's figures count what the user holds of the calendars it syncs: the shared
    # events are stored (once, for both), not "listed 9, stored 3" for the second account.
    second_run = runs[SECOND]
    assert second_run.stored_count == second_run.provider_count == 3 + 6
    assert second_run.elsewhere_count == 6
    assert not pipeline_status().reconcile_gaps


def test_removing_one_account_keeps_the_shared_events_and_the_other_still_checks_them(world, user):
    emu, first, second = world
    sync_and_normalize(first, second)
    rows = shared_rows(user.pk)
    before = sorted(rows.values_list("source_id", flat=True))
    # A row Google no longer lists, its deletion never seen (the event went while no sync ran):
    # the reconciliation of an account that syncs the calendar must report it.
    ghost = rows.order_by("source_id").first()
    assert ghost is not None
    RawEvent.objects.create(
        user=user,
        account=first,
        provider="calendar",
        source_id=f"{SHARED}/ghost0event",
        occurred_at=ghost.occurred_at,
        payload={**ghost.payload, "id": "ghost0event"},
        status="normalized",
    )

    google_account_disconnect(account=first)
    revoked = reconcile(second)[SECOND]
    assert revoked.extra_sample == [f"{SHARED}/ghost0event"]

    GoogleAccount.objects.filter(pk=first.pk).delete()
    # Nothing of the shared calendar is lost with the account that stored it.
    kept = rows.exclude(source_id__endswith="/ghost0event").values_list("source_id", flat=True)
    assert sorted(kept) == before
    assert Interaction.objects.filter(user=user, source_id__startswith=f"{SHARED}/").count() == 6
    # The remaining account keeps the calendar up to date and complete.
    shared = emu.mailbox(SECOND).calendar(SHARED)
    changed_id = shared.events()[0]["id"]
    emu.mailbox(SECOND).update_event(SHARED, changed_id, {"location": "Room 7"})
    sync_and_normalize(second)
    changed = rows.get(source_id=f"{SHARED}/{changed_id}")
    assert changed.payload["location"] == "Room 7" and changed.status == "normalized"
    assert changed.account_id == second.pk
    run = reconcile(second)[SECOND]
    assert run.missing_count == 0
    assert run.stored_count == run.provider_count + 1  # the ghost, reported as extra
    assert run.extra_sample == [f"{SHARED}/ghost0event"]
