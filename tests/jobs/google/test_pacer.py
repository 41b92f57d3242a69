"""Item 18: the pacer holds every Google limit over any sliding window, shared in Postgres.

The limits are tiny and the window short (quota_window_s, a config key tests shorten) so the
tests run in seconds; the arithmetic is the same as at 6,000 units over 62 s.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connection

from jobs.errors import PermanentError, TransientError
from jobs.google import pacer
from jobs.google.client import calendar_service, execute
from jobs.models import GoogleAccount, QuotaUsage
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db

WINDOW_S = 2.0


@pytest.fixture
def audit() -> Iterator[None]:
    """Copy every recorded spend into an unpruned table, to check every window afterwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE quota_audit (scope text, spent_at timestamptz, units float8);"
            "CREATE FUNCTION quota_audit_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO quota_audit VALUES (NEW.scope, NEW.spent_at, NEW.units); RETURN NEW; "
            "END $$;"
            "CREATE TRIGGER quota_audit AFTER INSERT ON jobs_quotausage "
            "FOR EACH ROW EXECUTE FUNCTION quota_audit_copy();"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER quota_audit ON jobs_quotausage; DROP FUNCTION quota_audit_copy();"
            "DROP TABLE quota_audit;"
        )


def busiest_window(scope: str, window_s: float = WINDOW_S) -> float:
    """The most units the audit saw in any window (t - window, t] of the scope."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(MAX(("
            "  SELECT SUM(b.units) FROM quota_audit b WHERE b.scope = a.scope"
            "  AND b.spent_at > a.spent_at - make_interval(secs => %s)"
            "  AND b.spent_at <= a.spent_at)), 0) FROM quota_audit a WHERE a.scope = %s",
            [window_s, scope],
        )
        return float(cursor.fetchone()[0])


def audited(scope: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(SUM(units), 0) FROM quota_audit WHERE scope = %s", [scope])
        return float(cursor.fetchone()[0])


def run_concurrently(*targets) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(target) -> None:
        try:
            start.wait()
            target()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def spender(account_id: int, units: float, seconds: float, **kwargs):
    def spend() -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            pacer.take(account_id, units, **kwargs)

    return spend


@pytest.fixture
def small_limits(pipeline_config):
    pipeline_config(
        gmail_quota_units_per_user_per_minute=300,
        gmail_quota_units_per_project_per_minute=1_000_000,
        quota_window_s=WINDOW_S,
        google_retry_after_cap_s=10.0,
    )


@pytest.fixture
def second_account(google_account) -> GoogleAccount:
    return GoogleAccount.objects.create(user=google_account.user, email="sam@pipeline.example")


def test_each_method_has_its_cost_gmail_in_units_calendar_in_requests():
    assert pacer.cost("gmail.users.messages.list") == 5
    assert pacer.cost("gmail.users.messages.get") == 5
    assert pacer.cost("gmail.users.history.list") == 2
    assert pacer.cost("gmail.users.getProfile") == 1
    assert pacer.cost("gmail.users.labels.list") == 1
    assert pacer.cost("calendar.events.list") == 1
    assert pacer.cost("calendar.calendarList.list") == 1
    assert pacer.cost("oauth.token") == 0


def test_item18_defaults_are_googles_2026_limits():
    from jobs.config import get_config

    config = get_config()
    assert config.gmail_quota_units_per_user_per_minute == 6_000
    assert config.gmail_quota_units_per_project_per_minute == 1_200_000
    assert config.calendar_requests_per_user_per_minute == 600
    assert config.calendar_requests_per_project_per_minute == 10_000


def test_item18_a_spend_is_recorded_against_the_user_and_the_project(google_account, small_limits):
    assert pacer.take(google_account.pk, 5) == 0.0
    assert pacer.spent(f"gmail:user:{google_account.pk}") == 5
    assert pacer.spent("gmail:project") == 5
    assert pacer.spent(f"gmail:user:{google_account.pk}:background") == 0


def test_item18_a_full_window_waits_until_the_first_spend_leaves_it(google_account, small_limits):
    assert pacer.take(google_account.pk, 300) == 0.0
    started = time.monotonic()
    waited = pacer.take(google_account.pk, 5)
    # A token bucket would admit 5 units after 1/60 of the window; the sliding window admits
    # nothing until the 300 units spent at t=0 are a whole window old.
    assert WINDOW_S - 0.2 <= waited <= WINDOW_S + 0.3
    assert time.monotonic() - started >= WINDOW_S - 0.2


@pytest.mark.django_db(transaction=True)
def test_item18_concurrent_takers_never_exceed_the_limit_over_any_sliding_window(
    google_account, small_limits, audit
):
    # Four workers with their own connections spend 10 units at a time for three windows.
    errors = run_concurrently(*[spender(google_account.pk, 10, 3 * WINDOW_S)] * 4)

    assert not errors
    scope = f"gmail:user:{google_account.pk}"
    assert busiest_window(scope) <= 300
    # ... and they did use the quota: a full window's worth at least, then more as it slid.
    assert busiest_window(scope) >= 280
    assert audited(scope) >= 2 * 300


@pytest.mark.django_db(transaction=True)
def test_item18_the_project_limit_binds_across_accounts(
    google_account, second_account, pipeline_config, audit
):
    pipeline_config(
        gmail_quota_units_per_user_per_minute=300,
        gmail_quota_units_per_project_per_minute=400,
        quota_window_s=WINDOW_S,
        google_retry_after_cap_s=10.0,
    )
    errors = run_concurrently(
        spender(google_account.pk, 10, 2.5 * WINDOW_S),
        spender(google_account.pk, 10, 2.5 * WINDOW_S),
        spender(second_account.pk, 10, 2.5 * WINDOW_S),
        spender(second_account.pk, 10, 2.5 * WINDOW_S),
    )

    assert not errors
    assert 380 <= busiest_window("gmail:project") <= 400
    assert busiest_window(f"gmail:user:{google_account.pk}") <= 300
    assert busiest_window(f"gmail:user:{second_account.pk}") <= 300
    # Each account alone stays under its own 300: only the project limit held them to 400.
    assert audited(f"gmail:user:{google_account.pk}") > 0
    assert audited(f"gmail:user:{second_account.pk}") > 0


def test_item18_calendar_counts_requests_against_its_own_limits(
    google_account, pipeline_config, emulator
):
    pipeline_config(
        calendar_requests_per_user_per_minute=3,
        gmail_quota_units_per_user_per_minute=100,
        quota_window_s=WINDOW_S,
        google_retry_after_cap_s=10.0,
    )
    calendar = calendar_service(google_account)
    # Gmail's budget is untouched by calendar calls, and calendar's by Gmail units.
    mailbox = google_account.email.lower()  # what the client keys the per-user limit by
    pacer.take(mailbox, 100)
    started = time.monotonic()
    for _ in range(3):
        execute(calendar.calendarList().list(), account=google_account)
    three = time.monotonic() - started
    assert pacer.spent(f"calendar:user:{mailbox}") == 3
    assert pacer.spent(f"gmail:user:{mailbox}") == 100
    execute(calendar.calendarList().list(), account=google_account)
    four = time.monotonic() - started

    assert emulator.log.count(route="calendar.calendarList.list") == 4
    assert three < 1.0  # a full Gmail budget did not hold up calendar requests
    assert four >= WINDOW_S - 0.2  # the fourth request waited for the first to leave


def test_item18_background_work_takes_only_its_share_and_leaves_the_rest(
    google_account, pipeline_config
):
    pipeline_config(
        gmail_quota_units_per_user_per_minute=300,
        quota_background_share=0.5,
        quota_window_s=WINDOW_S,
        google_retry_after_cap_s=0.5,
    )
    for _ in range(3):
        pacer.take(google_account.pk, 50, priority="background")
    # 150 units of background spend: the background share is used up ...
    with pytest.raises(TransientError) as caught:
        pacer.take(google_account.pk, 50, priority="background")
    assert caught.value.retry_after == pytest.approx(WINDOW_S, abs=0.3)
    # ... while an incremental sync still gets the other half at once.
    for _ in range(3):
        assert pacer.take(google_account.pk, 50) == 0.0
    assert pacer.spent(f"gmail:user:{google_account.pk}") == 300
    assert pacer.spent(f"gmail:user:{google_account.pk}:background") == 150


def test_item18_background_spend_counts_against_the_user_limit_too(google_account, pipeline_config):
    pipeline_config(
        gmail_quota_units_per_user_per_minute=300,
        quota_background_share=0.5,
        quota_window_s=WINDOW_S,
        google_retry_after_cap_s=0.5,
    )
    pacer.take(google_account.pk, 250)
    with pytest.raises(TransientError):
        pacer.take(google_account.pk, 100, priority="background")


def test_a_wait_beyond_the_cap_goes_back_to_the_engine_and_records_nothing(
    google_account, pipeline_config
):
    pipeline_config(
        gmail_quota_units_per_user_per_minute=300,
        quota_window_s=30.0,
        quota_burst_window_s=0.0,
        google_retry_after_cap_s=5.0,
    )
    pacer.take(google_account.pk, 300)
    with pytest.raises(TransientError) as caught:
        pacer.take(google_account.pk, 30)
    assert caught.value.retry_after == pytest.approx(30, abs=1)
    assert pacer.spent(f"gmail:user:{google_account.pk}", 30.0) == 300


def test_a_call_larger_than_a_limit_is_refused_clearly(google_account, small_limits):
    with pytest.raises(PermanentError, match="exceeds the limit"):
        pacer.take(google_account.pk, 301)


def test_expired_usage_rows_are_pruned(google_account, pipeline_config):
    pipeline_config(quota_window_s=1.0)
    pacer.take(google_account.pk, 5)
    pacer.take(google_account.pk, 5)
    assert QuotaUsage.objects.count() == 4  # user + project, twice
    time.sleep(1.1)
    pacer.take(google_account.pk, 5)
    assert QuotaUsage.objects.count() == 2
    pacer.take(google_account.pk + 1, 5)  # another account: only its own rows are new
    time.sleep(1.1)
    assert pacer.sweep() == 4
    assert QuotaUsage.objects.count() == 0


def test_an_unknown_priority_is_a_programming_error(google_account):
    with pytest.raises(ValueError, match="priority"):
        pacer.take(google_account.pk, 5, priority="urgent")


@pytest.mark.django_db(transaction=True)
def test_item18_the_burst_window_keeps_the_spend_even_and_the_waits_short(
    google_account, pipeline_config, audit
):
    pipeline_config(
        gmail_quota_units_per_user_per_minute=400,
        quota_window_s=WINDOW_S,
        quota_burst_window_s=WINDOW_S / 4,  # 400 / 4 * 1.5 = 150 units per 0.5 s
        google_retry_after_cap_s=10.0,
    )
    waits: list[float] = []

    def spend() -> None:
        until = time.monotonic() + 2.5 * WINDOW_S
        while time.monotonic() < until:
            waits.append(pacer.take(google_account.pk, 25))

    errors = run_concurrently(spend, spend)

    assert not errors
    scope = f"gmail:user:{google_account.pk}"
    assert busiest_window(scope, WINDOW_S / 4) <= 150
    assert busiest_window(scope) <= 400
    # Without the burst window the first 400 units would go at once and the next call would
    # wait a whole window; with it a call waits a third of one (2 s * (1 - 1/1.5)), or a little
    # more when the other worker takes the freed units first.
    assert max(waits) <= 0.6 * WINDOW_S
    assert audited(scope) >= 2 * 400 - 100


SPENDER = """
import time
from jobs.google import pacer
until = time.monotonic() + {seconds}
while time.monotonic() < until:
    pacer.take({account}, 7)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_item18_worker_processes_and_threads_share_one_limit(google_account, audit):
    limits = {
        "gmail_quota_units_per_user_per_minute": 300,
        "quota_window_s": WINDOW_S,
        "google_retry_after_cap_s": 10.0,
    }
    script = SPENDER.format(seconds=3 * WINDOW_S, account=google_account.pk)
    env = subprocess_env(CRM_PIPELINE=json.dumps(limits))
    processes = [
        subprocess.Popen(
            [PYTHON, "manage.py", "shell", "-c", script],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    with pytest.MonkeyPatch.context() as patch:
        from django.conf import settings

        patch.setattr(settings, "CRM_PIPELINE", {**settings.CRM_PIPELINE, **limits})
        errors = run_concurrently(*[spender(google_account.pk, 10, 3 * WINDOW_S)] * 2)
    outputs = [process.communicate(timeout=60) for process in processes]

    assert not errors
    assert [process.returncode for process in processes] == [0, 0], outputs
    scope = f"gmail:user:{google_account.pk}"
    assert busiest_window(scope) <= 300
    assert audited(scope) >= 2 * 300
    with connection.cursor() as cursor:  # the processes spend 7 units a call, the threads 10
        cursor.execute("SELECT DISTINCT units FROM quota_audit WHERE scope = %s", [scope])
        assert {units for (units,) in cursor.fetchall()} == {7.0, 10.0}
