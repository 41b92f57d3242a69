"""The admin's pipeline page, a job's own buttons, and the pages of what the pipeline stores
(raw events, interactions, sync states, Google accounts), through the Django test client."""

from __future__ import annotations

import time
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from contacts.models import Contact, ContactIdentity, InteractionParticipant
from jobs.enqueue import enqueue
from jobs.google.credentials import get_credentials
from jobs.google.tokens import decrypt_token
from jobs.models import (
    GoogleAccount,
    GoogleAccountStatus,
    Interaction,
    Job,
    JobStatus,
    NormalizationStatus,
    RawEvent,
    SyncState,
)
from jobs.runner import run_due_jobs, run_job
from jobs.status import pipeline_status
from tests.jobs.pipeline_data import build, failed_flaky

pytestmark = pytest.mark.django_db

PAGE = "admin:jobs_job_pipeline"
RETRY_GROUP = "admin:jobs_job_pipeline_retry_group"


def staff(django_user_model, client, *codenames: str):
    """Staff who are not superusers, with these permissions."""
    member = django_user_model.objects.create_user("member", password="pw", is_staff=True)
    member.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(member)
    return member


def group_form(kind: str) -> dict[str, str]:
    status = pipeline_status()
    group = next(g for g in status.failure_groups if g.kind == kind)
    return {"kind": group.kind, "pattern": group.pattern, "since": status.since.isoformat()}


# -- who may see and act -----------------------------------------------------------------------


def test_a_signed_out_visitor_or_non_staff_user_is_sent_to_sign_in(client, user):
    assert client.get(reverse(PAGE)).status_code == 302
    client.force_login(user)
    response = client.get(reverse(PAGE))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_staff_without_the_job_view_permission_are_refused(client, django_user_model):
    staff(django_user_model, client)
    assert client.get(reverse(PAGE)).status_code == 403


def test_staff_who_are_not_superusers_are_refused_the_page_and_its_retry_whatever_their_perms(
    client, django_user_model, user, other_user
):
    """The page shows every user's figures and accounts: it is for superusers (operators)."""
    built = build(user, other_user)
    staff(django_user_model, client, "view_job", "change_job")
    assert client.get(reverse(PAGE)).status_code == 403
    response = client.post(reverse(RETRY_GROUP), group_form("flaky"))
    assert response.status_code == 403
    assert {
        j.status for j in Job.objects.filter(pk__in=[j.pk for j in built.upstream_failures])
    } == {JobStatus.FAILED}


def test_a_superuser_sees_the_page_with_its_retry_button(staff_client, user, other_user):
    build(user, other_user)
    page = staff_client.get(reverse(PAGE))
    assert page.status_code == 200 and "Retry this group" in page.content.decode()


def test_staff_who_may_only_view_jobs_cannot_retry_even_their_own(client, django_user_model):
    member = staff(django_user_model, client, "view_job")
    job = enqueue("record", user=member, payload={"fail_permanent": True})
    run_job(job.pk)
    assert client.get(reverse("admin:jobs_job_change", args=[job.pk])).status_code == 200
    assert client.post(reverse("admin:jobs_job_act", args=[job.pk, "retry"])).status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_the_group_retry_needs_a_post(staff_client):
    assert staff_client.get(reverse(RETRY_GROUP)).status_code == 405


# -- the page ----------------------------------------------------------------------------------


def test_retry_this_group_queues_its_jobs_and_they_then_succeed(staff_client, user):
    jobs = failed_flaky(user, items=range(3), until_s=0.5)
    other = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(other.pk)
    time.sleep(0.6)  # the outage is over
    response = staff_client.post(reverse(RETRY_GROUP), group_form("flaky"), follow=True)
    assert "3 of 3 failed flaky job(s) queued for retry." in response.content.decode()
    assert {j.status for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {JobStatus.QUEUED}
    other.refresh_from_db()
    assert other.status == JobStatus.FAILED  # another group
    run_due_jobs(until_empty=True)
    assert {j.status for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {
        JobStatus.SUCCEEDED
    }
    assert not any(g.kind == "flaky" for g in pipeline_status().failure_groups)


def test_the_page_renders_in_a_constant_number_of_queries(
    staff_client, user, other_user, django_assert_max_num_queries, django_user_model
):
    build(user, other_user)
    with django_assert_max_num_queries(30) as few:
        assert staff_client.get(reverse(PAGE)).status_code == 200
    # ten more accounts, each with sync states, and more jobs: the same queries
    for i in range(10):
        owner = django_user_model.objects.create_user(f"owner{i}")
        account = GoogleAccount.objects.create(user=owner, email=f"o{i}@pipeline.example")
        SyncState.objects.create(user=owner, account=account, provider="gmail", cursor="1")
        failed_flaky(owner, items=range(i, i + 2))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert staff_client.get(reverse(PAGE)).status_code == 200


def test_the_job_changelist_links_to_the_page_and_wraps_long_errors(staff_client, user):
    long = "x" * 300
    Job.objects.create(user=user, kind="record", status="failed", last_error=f"ValueError: {long}")
    html = staff_client.get(reverse("admin:jobs_job_changelist")).content.decode()
    assert reverse(PAGE) in html
    assert f'title="ValueError: {long}"' in html and "job-error" in html


# -- a job's own page --------------------------------------------------------------------------


def test_a_failed_jobs_page_offers_retry_and_requeue_and_no_save(staff_client, user):
    job = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(job.pk)
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "job-retry" in page and "job-requeue" in page and "job-cancel" not in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert "asked to fail permanently" in page  # the full error
    response = staff_client.post(reverse("admin:jobs_job_act", args=[job.pk, "retry"]), follow=True)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert f"Job #{job.pk} queued for retry." in response.content.decode()


def test_requeue_from_the_page_opens_the_new_job(staff_client, user):
    job = enqueue("record", user=user)
    run_job(job.pk)
    response = staff_client.post(reverse("admin:jobs_job_act", args=[job.pk, "requeue"]))
    new = Job.objects.exclude(pk=job.pk).get()
    assert response["Location"] == reverse("admin:jobs_job_change", args=[new.pk])
    assert new.parent_id == job.pk


def test_cancel_from_the_page_asks_a_running_job_to_stop(staff_client, user):
    job = enqueue("record", user=user)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "job-cancel" in page and "job-retry" not in page
    response = staff_client.post(
        reverse("admin:jobs_job_act", args=[job.pk, "cancel"]), follow=True
    )
    job.refresh_from_db()
    assert job.cancel_requested and job.status == JobStatus.RUNNING
    assert "asked to stop at its next checkpoint" in response.content.decode()


def test_a_post_to_a_read_only_change_page_changes_nothing(staff_client, user):
    job = enqueue("record", user=user)
    url = reverse("admin:jobs_job_change", args=[job.pk])
    assert staff_client.post(url, {"status": "succeeded"}).status_code == 405
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert staff_client.get(url.replace("/change/", "/act/explode/")).status_code == 405


# -- raw events, interactions, sync states, accounts -------------------------------------------


def raw(user, source_id: str, **fields) -> RawEvent:
    return RawEvent.objects.create(
        user=user,
        provider=fields.pop("provider", "gmail"),
        source_id=source_id,
        payload={},
        **fields,
    )


def test_raw_events_filter_by_status_provider_account_and_batch(staff_client, user, account):
    batch = uuid.uuid4()
    failed = raw(user, "m1", status="failed", error="KeyError: 'payload'", account=account)
    pending = raw(user, "m2", batch_id=batch, provider="calendar")
    url = reverse("admin:jobs_rawevent_changelist")

    def listed(**query) -> set[int]:
        response = staff_client.get(url, query)
        assert response.status_code == 200
        return {r.pk for r in response.context["cl"].result_list}

    assert listed(status__exact="failed") == {failed.pk}
    assert listed(provider__exact="calendar") == {pending.pk}
    assert listed(account__id__exact=account.pk) == {failed.pk}
    assert listed(batch_id=str(batch)) == {pending.pk}
    assert listed(q=str(batch)) == {pending.pk}
    page = staff_client.get(reverse("admin:jobs_rawevent_change", args=[failed.pk]))
    assert "KeyError: &#x27;payload&#x27;" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()


def test_normalize_again_resets_the_raw_events_and_starts_a_normalize_job(staff_client, user):
    failed = raw(user, "m1", status=NormalizationStatus.FAILED, error="boom")
    done = raw(user, "m2", status=NormalizationStatus.NORMALIZED)
    untouched = raw(user, "m3", status=NormalizationStatus.FAILED, error="boom")
    response = staff_client.post(
        reverse("admin:jobs_rawevent_changelist"),
        {"action": "normalize_again", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )
    assert "2 raw event(s) back to pending; 1 normalize job(s) started." in (
        response.content.decode()
    )
    statuses = dict(RawEvent.objects.values_list("source_id", "status"))
    assert statuses == {"m1": "pending", "m2": "pending", "m3": "failed"}
    (job,) = Job.objects.filter(kind="normalize_gmail")
    assert job.payload["only_batch"] is False and job.user_id == user.pk
    untouched.refresh_from_db()
    assert untouched.error == "boom"


def test_interactions_are_found_by_subject_address_and_thread(staff_client, user):
    mail = Interaction.objects.create(
        user=user,
        source="gmail",
        source_id="m1",
        kind="email_inbound",
        occurred_at="2026-11-01T10:00:00Z",
        subject="Quarterly numbers",
        thread_id="thread-77",
        metadata={"from": {"email": "grace@hopper.example", "name": "Grace"}},
    )
    Interaction.objects.create(
        user=user,
        source="gmail",
        source_id="m2",
        kind="email_inbound",
        occurred_at="2026-11-02T10:00:00Z",
        subject="Lunch",
    )
    url = reverse("admin:jobs_interaction_changelist")
    for term in ("quarterly", "grace@hopper.example", "thread-77"):
        response = staff_client.get(url, {"q": term})
        assert [i.pk for i in response.context["cl"].result_list] == [mail.pk], term


def test_an_interaction_links_to_its_raw_event_and_contacts(staff_client, user):
    event = raw(user, "m1", status=NormalizationStatus.NORMALIZED)
    mail = Interaction.objects.create(
        user=user,
        source="gmail",
        source_id="m1",
        kind="email_inbound",
        occurred_at="2026-11-01T10:00:00Z",
        subject="Hello",
    )
    contact = Contact.objects.create(
        user=user, display_name="Grace Hopper", primary_email="grace@hopper.example"
    )
    identity = ContactIdentity.objects.create(
        user=user, contact=contact, value="grace@hopper.example", key="grace@hopper.example"
    )
    InteractionParticipant.objects.create(
        user=user,
        interaction=mail,
        contact=contact,
        identity=identity,
        role="from",
        occurred_at=mail.occurred_at,
    )
    page = staff_client.get(reverse("admin:jobs_interaction_change", args=[mail.pk]))
    html = page.content.decode()
    assert reverse("admin:jobs_rawevent_change", args=[event.pk]) in html
    assert reverse("admin:contacts_contact_change", args=[contact.pk]) in html
    assert "Grace Hopper" in html and 'name="_save"' not in html
    raw_page = staff_client.get(reverse("admin:jobs_rawevent_change", args=[event.pk]))
    assert reverse("admin:jobs_interaction_change", args=[mail.pk]) in raw_page.content.decode()


def test_sync_states_are_read_only_and_listed_per_account(staff_client, user, account):
    state = SyncState.objects.create(
        user=user, account=account, provider="gmail", pass_listed=9, pass_fetched=4
    )
    listed = staff_client.get(
        reverse("admin:jobs_syncstate_changelist"), {"account__id__exact": account.pk}
    )
    assert [s.pk for s in listed.context["cl"].result_list] == [state.pk]
    assert "4 / 9" in listed.content.decode()
    page = staff_client.get(reverse("admin:jobs_syncstate_change", args=[state.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()


def test_an_accounts_page_shows_its_sync_state_and_no_save(staff_client, user, account):
    SyncState.objects.create(user=user, account=account, provider="gmail", pass_listed=9)
    html = staff_client.get(
        reverse("admin:jobs_googleaccount_change", args=[account.pk])
    ).content.decode()
    assert "pass fetched / listed" in html.lower() and "0 / 9" in html
    assert 'name="_save"' not in html
    assert f"account__id__exact={account.pk}" in html


def test_sync_now_starts_one_sync_per_provider_for_active_accounts(staff_client, user, account):
    revoked = GoogleAccount.objects.create(
        user=user, email="old@pipeline.example", status=GoogleAccountStatus.REVOKED
    )
    response = staff_client.post(
        reverse("admin:jobs_googleaccount_changelist"),
        {"action": "sync_now", "_selected_action": [account.pk, revoked.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "2 sync job(s) started for 1 account(s)" in html and "1 account(s) skipped" in html
    assert sorted(Job.objects.values_list("kind", flat=True)) == ["calendar_sync", "gmail_sync"]
    again = staff_client.post(
        reverse("admin:jobs_googleaccount_changelist"),
        {"action": "sync_now", "_selected_action": [account.pk]},
        follow=True,
    )
    assert "0 sync job(s) started for 1 account(s); 2 already queued" in again.content.decode()


def test_deleting_an_account_revokes_its_grant_as_disconnect_does(
    staff_client, google_account, emulator
):
    refresh_token = decrypt_token(google_account.refresh_token_encrypted)
    response = staff_client.post(
        reverse("admin:jobs_googleaccount_delete", args=[google_account.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not GoogleAccount.objects.filter(pk=google_account.pk).exists()
    assert emulator.log.count(route="oauth.revoke") == 1
    from google_emulator.errors import OAuthError

    with pytest.raises(OAuthError, match="invalid_grant"):
        emulator.accounts.refresh({"refresh_token": refresh_token})


def test_deleting_selected_accounts_revokes_each(staff_client, google_account, emulator):
    staff_client.post(
        reverse("admin:jobs_googleaccount_changelist"),
        {"action": "delete_selected", "_selected_action": [google_account.pk], "post": "yes"},
    )
    assert not GoogleAccount.objects.exists()
    assert emulator.log.count(route="oauth.revoke") == 1


def test_no_token_appears_on_any_page(staff_client, google_account, user, other_user):
    access_token = get_credentials(google_account).token
    google_account.refresh_from_db()
    secrets = [
        decrypt_token(google_account.refresh_token_encrypted),
        access_token,
        google_account.refresh_token_encrypted,
        google_account.access_token_encrypted,
    ]
    assert all(secrets)
    build(user, other_user)
    SyncState.objects.create(user=user, account=google_account, provider="gmail", cursor="9")
    pages = [
        reverse(PAGE),
        reverse("admin:jobs_googleaccount_changelist"),
        reverse("admin:jobs_googleaccount_change", args=[google_account.pk]),
        reverse("admin:jobs_syncstate_changelist"),
        reverse("admin:jobs_rawevent_changelist"),
        reverse("admin:jobs_interaction_changelist"),
        reverse("admin:jobs_job_changelist"),
        "/metrics",
        "/health/",
    ]
    pages += [reverse("admin:jobs_job_change", args=[j.pk]) for j in Job.objects.all()[:5]]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        for secret in secrets:
            assert secret not in body, url


def test_merge_suggestion_and_merge_pages_have_no_save_button(staff_client, user):
    from contacts.models import MergeSuggestion

    a = Contact.objects.create(user=user, display_name="Grace Hopper", primary_email="g@n.example")
    b = Contact.objects.create(
        user=user, display_name="Grace M Hopper", primary_email="h@n.example"
    )
    suggestion = MergeSuggestion.objects.create(
        user=user, contact_a=a, contact_b=b, score=92.0, reason="similar names"
    )
    url = reverse("admin:contacts_mergesuggestion_change", args=[suggestion.pk])
    page = staff_client.get(url).content.decode()
    assert "similar names" in page and 'name="_save"' not in page
    assert staff_client.post(url, {"status": "accepted"}).status_code == 405
