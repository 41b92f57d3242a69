"""The client layer over loopback against the emulator: retries, timeouts, batches, job outcomes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.enqueue import enqueue
from jobs.errors import PermanentError, TransientError
from jobs.google import pacer
from jobs.google.client import (
    PartFailure,
    batch_execute,
    calendar_service,
    execute,
    gmail_service,
)
from jobs.google.errors import CursorExpired
from jobs.models import GoogleAccount, GoogleAccountStatus, Job, JobStatus
from jobs.payloads import Payload
from jobs.runner import run_job

pytestmark = pytest.mark.django_db

GET = "gmail.users.messages.get"


@dataclass(frozen=True)
class GoogleCallPayload(Payload):
    account_id: int


@processor("test_google_call", payload=GoogleCallPayload)
def google_call(job: Job, ctx: JobContext) -> Metrics:
    """Test-only kind: one paced Gmail call, as a sync processor makes it."""
    account = GoogleAccount.objects.get(pk=ctx.payload.account_id, user_id=ctx.user_id)
    gmail = gmail_service(account)
    execute(gmail.users().getProfile(userId="me"), account=account)
    return Metrics(items_fetched=1)


@pytest.fixture
def gmail(google_account):
    return gmail_service(google_account)


@pytest.fixture
def ids(gmail, google_account, emulator) -> list[str]:
    listing = execute(
        gmail.users().messages().list(userId="me", maxResults=120), account=google_account
    )
    emulator.log.reset()
    return [m["id"] for m in listing["messages"]]


def gets(gmail, ids: list[str]) -> list:
    return [gmail.users().messages().get(userId="me", id=i, format="minimal") for i in ids]


def batch_sizes(emulator) -> list[int]:
    return [e.batch_parts for e in emulator.log.entries if e.route == "batch"]


class TestExecute:
    @pytest.mark.parametrize("status", [429, 500, 503])
    def test_a_transient_fault_is_retried_and_the_call_succeeds(
        self, gmail, google_account, emulator, status
    ):
        emulator.faults.add("gmail.users.getProfile", status, times=1)
        profile = execute(gmail.users().getProfile(userId="me"), account=google_account)
        assert profile["emailAddress"] == google_account.email
        assert emulator.log.count(route="gmail.users.getProfile") == 2

    def test_a_403_rate_limit_is_retried_too(self, gmail, google_account, emulator):
        emulator.faults.add("gmail.users.getProfile", 403, times=1, reason="userRateLimitExceeded")
        assert execute(gmail.users().getProfile(userId="me"), account=google_account)

    def test_a_hanging_response_times_out_at_the_configured_timeout(
        self, google_account, emulator, pipeline_config
    ):
        pipeline_config(google_request_timeout_s=1.0, google_request_retries=0)
        gmail = gmail_service(google_account)
        emulator.faults.add_delay("gmail.users.getProfile", 5)
        started = time.monotonic()
        with pytest.raises(TransientError, match="timed out"):
            execute(gmail.users().getProfile(userId="me"), account=google_account)
        assert 0.9 <= time.monotonic() - started < 2.5

    def test_a_429_outlasting_the_retries_carries_retry_after(
        self, gmail, google_account, emulator, pipeline_config
    ):
        pipeline_config(google_request_retries=0)
        emulator.faults.add("gmail.users.getProfile", 429, retry_after=90)
        with pytest.raises(TransientError) as caught:
            execute(gmail.users().getProfile(userId="me"), account=google_account)
        assert caught.value.retry_after == 90

    def test_a_bad_request_fails_permanently(self, gmail, google_account, emulator):
        emulator.faults.add("gmail.users.messages.list", 400, times=1)
        with pytest.raises(PermanentError, match=r"messages\.list: HTTP 400"):
            execute(gmail.users().messages().list(userId="me"), account=google_account)
        assert emulator.log.count(route="gmail.users.messages.list") == 1

    def test_an_expired_history_id_is_a_cursor_expiry(self, gmail, google_account, emulator):
        emulator.faults.add("gmail.users.history.list", 404, times=1)
        with pytest.raises(CursorExpired):
            execute(
                gmail.users().history().list(userId="me", startHistoryId="1"),
                account=google_account,
            )

    def test_an_expired_sync_token_is_a_cursor_expiry(self, google_account, emulator):
        calendar = calendar_service(google_account)
        emulator.faults.add("calendar.events.list", 410, times=1)
        with pytest.raises(CursorExpired):
            execute(
                calendar.events().list(calendarId="primary", syncToken="old"),
                account=google_account,
            )

    def test_gmail_calls_are_charged_in_units_and_calendar_calls_in_requests(
        self, gmail, google_account
    ):
        mailbox = google_account.email.lower()
        execute(gmail.users().messages().list(userId="me"), account=google_account)
        assert pacer.spent(f"gmail:user:{mailbox}") == 5
        assert pacer.spent("gmail:project") == 5
        execute(calendar_service(google_account).calendarList().list(), account=google_account)
        assert pacer.spent(f"gmail:user:{mailbox}") == 5
        assert pacer.spent(f"calendar:user:{mailbox}") == 1
        assert pacer.spent("calendar:project") == 1

    def test_one_mailbox_connected_by_two_users_has_one_quota(
        self, gmail, google_account, other_user
    ):
        """Google counts a per-user limit per mailbox: a second CRM user who connects the same
        address spends from the same minute, not from a second one."""
        from jobs.google.accounts import google_account_connect

        twin = google_account_connect(
            user=other_user, email=google_account.email.upper(), refresh_token="1//twin"
        )
        execute(gmail.users().messages().list(userId="me"), account=google_account)
        execute(gmail.users().messages().list(userId="me"), account=twin)
        assert pacer.spent(f"gmail:user:{google_account.email.lower()}") == 10


class TestBatch:
    def test_fifty_gets_are_one_http_request(self, gmail, google_account, emulator, ids):
        messages = batch_execute(gmail, gets(gmail, ids[:50]), account=google_account)
        assert [m["id"] for m in messages] == ids[:50]
        assert emulator.log.count(route="batch") == 1
        assert emulator.log.count() == 1
        assert batch_sizes(emulator) == [50]

    def test_more_than_fifty_go_in_chunks_in_order(self, gmail, google_account, emulator, ids):
        messages = batch_execute(gmail, gets(gmail, ids[:120]), account=google_account)
        assert [m["id"] for m in messages] == ids[:120]
        assert batch_sizes(emulator) == [50, 50, 20]

    def test_a_part_failing_with_429_is_retried_on_its_own(
        self, gmail, google_account, emulator, ids, pipeline_config
    ):
        pipeline_config(google_batch_retry_base_s=0.05)
        emulator.faults.add(GET, 429, times=2, after=10)
        messages = batch_execute(gmail, gets(gmail, ids[:50]), account=google_account)
        assert [m["id"] for m in messages] == ids[:50]
        assert batch_sizes(emulator) == [50, 2]
        retried = [e for e in emulator.log.entries if e.in_batch and e.status == 200][-2:]
        assert {e.path.rsplit("/", 1)[-1] for e in retried} == set(ids[10:12])

    def test_a_5xx_part_is_retried_and_a_retry_after_is_honoured(
        self, gmail, google_account, emulator, ids, pipeline_config
    ):
        pipeline_config(google_batch_retry_base_s=0.05)
        emulator.faults.add(GET, 503, times=1, retry_after=1)
        started = time.monotonic()
        messages = batch_execute(gmail, gets(gmail, ids[:5]), account=google_account)
        assert all(messages)
        assert time.monotonic() - started >= 0.95
        assert batch_sizes(emulator) == [5, 1]

    def test_a_retry_after_beyond_the_cap_goes_back_to_the_job_engine(
        self, gmail, google_account, emulator, ids
    ):
        emulator.faults.add(GET, 429, times=1, retry_after=120)
        with pytest.raises(TransientError) as caught:
            batch_execute(gmail, gets(gmail, ids[:5]), account=google_account)
        assert caught.value.retry_after == 120
        assert batch_sizes(emulator) == [5]

    def test_a_part_that_keeps_failing_raises_its_mapped_error(
        self, gmail, google_account, emulator, ids, pipeline_config
    ):
        pipeline_config(google_batch_retry_base_s=0.01, google_request_retries=2)
        emulator.faults.add(GET, 500, after=2)
        with pytest.raises(TransientError, match=r"messages\.get: HTTP 500"):
            batch_execute(gmail, gets(gmail, ids[:3]), account=google_account)
        assert batch_sizes(emulator) == [3, 1, 1]

    def test_collected_a_part_that_keeps_failing_while_others_came_back_is_a_part_failure(
        self, gmail, google_account, emulator, ids, pipeline_config
    ):
        pipeline_config(google_batch_retry_base_s=0.01, google_request_retries=2)
        emulator.faults.add(GET, 500, after=2)
        results = batch_execute(
            gmail, gets(gmail, ids[:3]), account=google_account, collect_failures=True
        )
        assert [r["id"] for r in results[:2]] == ids[:2]
        assert isinstance(results[2], PartFailure) and results[2].transient
        assert "HTTP 500" in str(results[2].error)

    def test_collected_an_outage_that_starts_mid_batch_still_raises(
        self, gmail, google_account, emulator, ids, pipeline_config
    ):
        pipeline_config(google_batch_retry_base_s=0.01, google_request_retries=1)
        emulator.faults.add(GET, 503, after=5)  # 5 of 10 come back, then everything fails
        with pytest.raises(TransientError):
            batch_execute(
                gmail, gets(gmail, ids[:10]), account=google_account, collect_failures=True
            )

    def test_collected_a_whole_batch_failing_is_an_outage_and_raises(
        self, gmail, google_account, emulator, ids, pipeline_config
    ):
        pipeline_config(google_batch_retry_base_s=0.01, google_request_retries=1)
        emulator.faults.add(GET, 503)
        with pytest.raises(TransientError):
            batch_execute(
                gmail, gets(gmail, ids[:3]), account=google_account, collect_failures=True
            )

    def test_a_deleted_message_is_none_in_its_slot(self, gmail, google_account, emulator, ids):
        emulator.mailbox().delete_message(ids[1])
        messages = batch_execute(gmail, gets(gmail, ids[:3]), account=google_account)
        assert messages[0]["id"] == ids[0] and messages[1] is None and messages[2]["id"] == ids[2]

    def test_a_failing_batch_request_is_sent_again_whole(
        self, gmail, google_account, emulator, ids, pipeline_config
    ):
        pipeline_config(google_batch_retry_base_s=0.01)
        emulator.faults.add("batch", 503, times=1)
        messages = batch_execute(gmail, gets(gmail, ids[:4]), account=google_account)
        assert [m["id"] for m in messages] == ids[:4]
        assert emulator.log.count(route="batch") == 2


class TestJobOutcomes:
    def test_a_rate_limit_outlasting_the_retries_reschedules_the_job_after_retry_after(
        self, user, google_account, emulator, pipeline_config
    ):
        pipeline_config(google_request_retries=1)
        emulator.faults.add("gmail.users.getProfile", 429, retry_after=120)
        job = enqueue("test_google_call", user=user, payload={"account_id": google_account.pk})
        before = timezone.now()
        assert run_job(job.pk) == JobStatus.RETRYING
        job.refresh_from_db()
        assert job.status == JobStatus.RETRYING
        assert job.run_after >= before + timedelta(seconds=120)
        assert "HTTP 429" in job.last_error

    def test_a_revoked_grant_fails_the_job_at_once_and_flags_the_account(
        self, user, google_account, emulator
    ):
        from jobs.google.tokens import decrypt_token

        emulator.revoke(decrypt_token(google_account.refresh_token_encrypted))
        job = enqueue("test_google_call", user=user, payload={"account_id": google_account.pk})
        assert run_job(job.pk) == JobStatus.FAILED
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED and job.attempts == 1
        google_account.refresh_from_db()
        assert google_account.status == GoogleAccountStatus.NEEDS_REAUTH
