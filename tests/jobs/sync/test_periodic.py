"""The periodic sync: a Schedule that enqueues syncs for every active account, without pile-ups."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule

from jobs.models import GoogleAccount, Job, SyncState
from jobs.schedules import PERIODIC_SYNC, ensure_schedules, wanted_schedules
from jobs.sync.periodic import periodic_sync

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_handoff(pipeline_config):
    pipeline_config(handoff="none")


def test_it_enqueues_gmail_and_calendar_for_every_active_account(user, other_user):
    ada = GoogleAccount.objects.create(user=user, email="ada@gmail.example")
    bob = GoogleAccount.objects.create(user=other_user, email="bob@gmail.example")
    GoogleAccount.objects.create(user=other_user, email="old@gmail.example", status="revoked")

    assert periodic_sync() == 4

    started = set(Job.objects.values_list("kind", "payload__account_id"))
    assert started == {(kind, a.pk) for kind in ("gmail_sync", "calendar_sync") for a in (ada, bob)}
    assert Job.objects.filter(user=user).values("batch_id").distinct().count() == 1


def test_a_user_whose_sync_is_still_active_gets_no_second_one(user):
    GoogleAccount.objects.create(user=user, email="ada@gmail.example")
    periodic_sync()

    assert periodic_sync() == 0
    assert Job.objects.count() == 2


def test_a_user_with_two_accounts_gets_a_sync_of_each_least_recently_synced_first(user):
    recent = GoogleAccount.objects.create(user=user, email="a@gmail.example")
    stale = GoogleAccount.objects.create(user=user, email="b@gmail.example")
    for account, age in ((recent, 1), (stale, 60)):
        SyncState.objects.create(
            user=user,
            account=account,
            provider="gmail",
            last_synced_at=timezone.now() - timedelta(minutes=age),
        )

    periodic_sync()

    # One lane per account and provider: both accounts sync, the stale one first.
    started = list(Job.objects.order_by("id").values_list("payload__account_id", flat=True))
    assert started == [stale.pk, stale.pk, recent.pk, recent.pk]


def test_the_schedule_runs_periodic_sync_at_the_configured_interval(pipeline_config):
    pipeline_config(periodic_sync_minutes=7)

    wanted = wanted_schedules()[PERIODIC_SYNC]
    ensure_schedules()

    assert import_string(wanted["func"]) is periodic_sync
    schedule = Schedule.objects.get(name=PERIODIC_SYNC)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (wanted["func"], "I", 7)
    assert schedule.repeats == -1
