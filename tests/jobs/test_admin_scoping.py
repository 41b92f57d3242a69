"""Staff who are not superusers see and act on only their own rows in the jobs admins (jobs,
raw events, interactions, Google accounts, sync states, push channels), as in the contacts,
insights and search admins; the pipeline page, which shows every user's figures, is for
superusers only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs.enqueue import enqueue
from jobs.models import (
    GoogleAccount,
    Interaction,
    Job,
    JobStatus,
    NormalizationStatus,
    PushChannel,
    RawEvent,
    ReconcileRun,
    SyncState,
)
from jobs.runner import run_job
from jobs.status import pipeline_status
from jobs.sync.common import SYNC_KINDS

pytestmark = pytest.mark.django_db

MODELS = (
    "job",
    "rawevent",
    "interaction",
    "googleaccount",
    "syncstate",
    "pushchannel",
    "reconcilerun",
)


@dataclass
class Rows:
    """One row of every model (a failed job: it can be retried and requeued)."""

    job: Job
    queued: Job
    rawevent: RawEvent
    interaction: Interaction
    googleaccount: GoogleAccount
    syncstate: SyncState
    pushchannel: PushChannel
    reconcilerun: ReconcileRun

    def of(self, model: str) -> Any:
        return getattr(self, model)


def rows_of(user, tag: str) -> Rows:
    job = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    account = GoogleAccount.objects.create(
        user=user, email=f"{tag}@scope.example", addresses=[f"{tag}@scope.example"]
    )
    return Rows(
        job=job,
        queued=enqueue("record", user=user),
        rawevent=RawEvent.objects.create(
            user=user,
            account=account,
            provider="gmail",
            source_id=f"{tag}-m1",
            payload={"id": f"{tag}-m1"},
            status=NormalizationStatus.FAILED,
            error="KeyError: 'payload'",
        ),
        interaction=Interaction.objects.create(
            user=user,
            source="gmail",
            source_id=f"{tag}-m1",
            kind="email_inbound",
            occurred_at="2026-11-01T10:00:00Z",
            subject=f"{tag} subject",
        ),
        googleaccount=account,
        syncstate=SyncState.objects.create(
            user=user, account=account, provider="gmail", cursor="1"
        ),
        pushchannel=PushChannel.objects.create(
            user=user, account=account, provider="gmail", channel_id=f"{tag}-channel"
        ),
        reconcilerun=ReconcileRun.objects.create(
            user=user,
            account=account,
            provider="gmail",
            status="gap",
            missing_count=2,
            missing_sample=[f"{tag}-m2", f"{tag}-m3"],
            started_at="2026-11-01T10:00:00Z",
        ),
    )


@pytest.fixture
def member(django_user_model):
    """Staff, not a superuser, with every view and change permission of the jobs models."""
    member = django_user_model.objects.create_user(
        "member", email="member@example.com", password="pw", is_staff=True
    )
    member.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="jobs",
            codename__in=[f"{verb}_{model}" for verb in ("view", "change") for model in MODELS],
        )
    )
    return member


@pytest.fixture
def own(member) -> Rows:
    return rows_of(member, "own")


@pytest.fixture
def others(other_user) -> Rows:
    return rows_of(other_user, "other")


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


def listed(client, model: str) -> set[int]:
    response = client.get(reverse(f"admin:jobs_{model}_changelist"))
    assert response.status_code == 200, model
    return {row.pk for row in response.context["cl"].result_list}


def test_every_changelist_lists_only_the_members_own_rows(member_client, own, others):
    for model in MODELS:
        assert own.of(model).pk in listed(member_client, model), model
        assert others.of(model).pk not in listed(member_client, model), model
    assert listed(member_client, "job") == {own.job.pk, own.queued.pk}


def test_no_changelist_filter_shows_another_users_account_address(member_client, own, others):
    for model in MODELS:
        page = member_client.get(reverse(f"admin:jobs_{model}_changelist")).content.decode()
        assert "other@scope.example" not in page, model


def test_a_superuser_still_sees_every_users_rows(staff_client, own, others):
    for model in MODELS:
        assert {own.of(model).pk, others.of(model).pk} <= listed(staff_client, model), model


def test_another_users_object_page_does_not_exist_for_the_member(member_client, own, others):
    for model in MODELS:
        mine = member_client.get(reverse(f"admin:jobs_{model}_change", args=[own.of(model).pk]))
        assert mine.status_code == 200, model
        response = member_client.get(
            reverse(f"admin:jobs_{model}_change", args=[others.of(model).pk]), follow=True
        )
        assert response.status_code in (200, 404), model
        if response.status_code == 200:
            assert response.redirect_chain, model  # sent away, not shown
            assert "doesn\u2019t exist" in response.content.decode(), model
        assert "other@scope.example" not in response.content.decode(), model


def post_action(client, model: str, action: str, ids: list[int]):
    return client.post(
        reverse(f"admin:jobs_{model}_changelist"),
        {"action": action, "_selected_action": ids},
        follow=True,
    )


def test_job_actions_on_another_users_jobs_change_nothing(member_client, own, others):
    for action in ("retry_jobs", "requeue_jobs"):
        post_action(member_client, "job", action, [others.job.pk])
        others.job.refresh_from_db()
        assert others.job.status == JobStatus.FAILED, action
    post_action(member_client, "job", "cancel_jobs", [others.queued.pk])
    others.queued.refresh_from_db()
    assert others.queued.status == JobStatus.QUEUED
    assert not Job.objects.filter(parent=others.job).exists()
    # the member's own job, selected together with the other's, is retried alone
    post_action(member_client, "job", "retry_jobs", [own.job.pk, others.job.pk])
    own.job.refresh_from_db()
    others.job.refresh_from_db()
    assert own.job.status == JobStatus.QUEUED and others.job.status == JobStatus.FAILED


def test_a_jobs_own_buttons_do_not_reach_another_users_job(member_client, own, others):
    for verb in ("retry", "requeue"):
        response = member_client.post(reverse("admin:jobs_job_act", args=[others.job.pk, verb]))
        assert response.status_code == 404, verb
    response = member_client.post(reverse("admin:jobs_job_act", args=[others.queued.pk, "cancel"]))
    assert response.status_code == 404
    others.job.refresh_from_db()
    others.queued.refresh_from_db()
    assert others.job.status == JobStatus.FAILED and others.queued.status == JobStatus.QUEUED
    assert not Job.objects.filter(parent=others.job).exists()
    member_client.post(reverse("admin:jobs_job_act", args=[own.job.pk, "retry"]))
    own.job.refresh_from_db()
    assert own.job.status == JobStatus.QUEUED


def test_normalize_again_does_not_reach_another_users_raw_events(member_client, own, others):
    post_action(member_client, "rawevent", "normalize_again", [others.rawevent.pk])
    others.rawevent.refresh_from_db()
    assert others.rawevent.status == NormalizationStatus.FAILED
    assert not Job.objects.filter(kind="normalize_gmail", user=others.job.user).exists()


def test_sync_now_does_not_reach_another_users_account(member_client, own, others):
    post_action(member_client, "googleaccount", "sync_now", [others.googleaccount.pk])
    assert (
        not Job.objects.filter(user=others.job.user)
        .exclude(pk__in=[others.job.pk, others.queued.pk])
        .exists()
    )
    post_action(member_client, "googleaccount", "sync_now", [own.googleaccount.pk])
    assert Job.objects.filter(user=own.job.user, kind__in=SYNC_KINDS.values()).exists()


def test_the_pipeline_page_and_its_group_retry_are_for_superusers_only(
    member_client, admin_client, own, others
):
    assert member_client.get(reverse("admin:jobs_job_pipeline")).status_code == 403
    status = pipeline_status()
    group = next(g for g in status.failure_groups if g.kind == "record")
    form = {"kind": group.kind, "pattern": group.pattern, "since": status.since.isoformat()}
    response = member_client.post(reverse("admin:jobs_job_pipeline_retry_group"), form)
    assert response.status_code == 403
    others.job.refresh_from_db()
    own.job.refresh_from_db()
    assert others.job.status == own.job.status == JobStatus.FAILED
    page = admin_client.get(reverse("admin:jobs_job_pipeline"))
    assert page.status_code == 200 and "Retry this group" in page.content.decode()
