"""The per-account Gmail quota bucket in Postgres: charged, refilled, shared, never overdrawn."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from jobs.errors import TransientError
from jobs.google import pacer
from jobs.models import QuotaBucket

pytestmark = pytest.mark.django_db


def test_each_gmail_method_has_its_quota_cost_and_calendar_is_free():
    assert pacer.cost("gmail.users.messages.list") == 5
    assert pacer.cost("gmail.users.messages.get") == 5
    assert pacer.cost("gmail.users.history.list") == 2
    assert pacer.cost("gmail.users.getProfile") == 1
    assert pacer.cost("gmail.users.labels.list") == 1
    assert pacer.cost("calendar.events.list") == 0


def test_the_first_take_creates_a_full_bucket_and_charges_the_units(google_account):
    assert pacer.take(google_account.pk, 5) == 0.0
    bucket = QuotaBucket.objects.get(account=google_account)
    assert bucket.tokens == pytest.approx(15000 - 5)
    pacer.take(google_account.pk, 2)
    bucket.refresh_from_db()
    assert 15000 - 7 <= bucket.tokens <= 15000 - 6  # a few ms of refill at most


def test_the_bucket_refills_by_elapsed_time_up_to_capacity(google_account, pipeline_config):
    pipeline_config(gmail_quota_units_per_minute=600)  # 10 units per second
    pacer.take(google_account.pk, 300)
    time.sleep(0.5)
    pacer.take(google_account.pk, 1)
    tokens = QuotaBucket.objects.get(account=google_account).tokens
    assert 300 + 5 - 1 - 0.5 <= tokens <= 300 + 5 - 1 + 1.5


def test_a_burst_beyond_capacity_sleeps_for_the_deficit(google_account, pipeline_config):
    pipeline_config(gmail_quota_units_per_minute=600)
    assert pacer.take(google_account.pk, 600) == 0.0
    started = time.monotonic()
    waited = pacer.take(google_account.pk, 5)
    assert 0.4 <= waited <= 0.55
    assert time.monotonic() - started >= 0.4


def test_a_wait_beyond_the_cap_goes_back_to_the_engine_and_is_refunded(
    google_account, pipeline_config
):
    pipeline_config(gmail_quota_units_per_minute=60, google_retry_after_cap_s=5.0)
    pacer.take(google_account.pk, 60)
    with pytest.raises(TransientError) as caught:
        pacer.take(google_account.pk, 30)
    assert caught.value.retry_after == pytest.approx(30, abs=1)
    assert QuotaBucket.objects.get(account=google_account).tokens >= -0.5


@pytest.mark.django_db(transaction=True)
def test_concurrent_takers_queue_and_never_overdraw(google_account, pipeline_config):
    pipeline_config(gmail_quota_units_per_minute=1200)  # 20 units per second
    takes, units = 61, 10  # 2 x 610 = 1220 units: 20 more than the full bucket holds
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(takes):
                pacer.take(google_account.pk, units)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    elapsed = time.monotonic() - started
    assert not errors
    # Every reservation was recorded (no lost update), and spending 1220 units from a
    # 1200-unit bucket refilling at 20/s cannot finish in under a second.
    bucket = QuotaBucket.objects.get(account=google_account)
    assert bucket.tokens <= 1200 - 2 * takes * units + 20 * elapsed + 0.5
    assert elapsed >= 0.95
