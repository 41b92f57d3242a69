"""The pipeline's figures: one selector, the same numbers on the page and from the command."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from html.parser import HTMLParser
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.status import error_class, pipeline_kinds, pipeline_status
from tests.jobs.pipeline_data import build

pytestmark = pytest.mark.django_db

PAGE = "admin:jobs_job_pipeline"


class Figures(HTMLParser):
    """Every element with data-figure: its path, its raw value and the link behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-figure" in a:
            self.found.append((a["data-figure"] or "", a.get("data-value") or "", a.get("href")))


def figures(html: str) -> list[tuple[str, str, str | None]]:
    parser = Figures()
    parser.feed(html)
    return parser.found


def resolve(data: Any, path: str) -> Any:
    for part in path.split("."):
        if part == "length":
            return len(data)
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def command_json() -> tuple[dict[str, Any], int]:
    out = StringIO()
    try:
        call_command("pipeline_status", "--json", stdout=out, stderr=StringIO())
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return json.loads(out.getvalue()), code


def test_the_page_and_the_command_agree_on_every_figure(staff_client, user, other_user):
    build(user, other_user)
    data, _ = command_json()
    page = staff_client.get(reverse(PAGE))
    assert page.status_code == 200
    found = figures(page.content.decode())
    assert len(found) > 100
    elapsed = (timezone.now() - datetime.fromisoformat(data["now"])).total_seconds() + 1
    for path, shown, _ in found:
        expected = resolve(data, path)
        if expected is None:
            assert shown == "", path
        elif path.endswith(("AgeS", "LeftS")):
            assert abs(float(shown) - expected) <= elapsed, (path, shown, expected)
        elif isinstance(expected, int | float):
            assert float(shown) == pytest.approx(expected), (path, shown, expected)
        else:
            assert shown == str(expected), (path, shown, expected)


def test_numbers_read_off_the_page_are_the_databases(staff_client, user, other_user):
    built = build(user, other_user)
    html = staff_client.get(reverse(PAGE)).content.decode()
    shown = {path: value for path, value, _ in figures(html)}
    assert shown["failedTotal"] == str(Job.objects.filter(status=JobStatus.FAILED).count()) == "6"
    assert shown["runningTotal"] == "1"
    assert shown["rawEvents.pending"] == "3" and shown["rawEvents.stalePending"] == "2"
    assert shown["rawEvents.failed"] == "2"
    assert shown["needsReauth.length"] == "1"
    status = pipeline_status()
    flaky = next(i for i, row in enumerate(status.kinds) if row.kind == "flaky")
    assert shown[f"kinds.{flaky}.byStatus.failed"] == str(len(built.upstream_failures)) == "4"
    assert "bob@pipeline.example" in html and "reconnect" in html


def test_failures_are_grouped_by_kind_and_error_pattern(user, other_user):
    built = build(user, other_user)
    groups = {(g.kind, g.pattern): g for g in pipeline_status().failure_groups}
    upstream = groups[("flaky", "PermanentError: upstream answered <n> for item <n>")]
    assert upstream.count == 4 and upstream.error_class == "PermanentError"
    assert upstream.latest_job_id == built.upstream_failures[-1].pk
    assert upstream.latest_error == "PermanentError: upstream answered 503 for item 7"
    assert groups[("record", "PermanentError: asked to fail permanently")].count == 2
    assert len(groups) == 2


def test_the_error_pattern_takes_a_tracebacks_last_line_and_drops_what_varies(user):
    job = Job.objects.create(
        user=user,
        kind="crash",
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        last_error=(
            "attempts exhausted; last error: Traceback (most recent call last):\n"
            '  File "x.py", line 3, in run\n'
            "ValueError: message 18c2f0a9be44d1f2 of ada@example.com "
            "(5b0c7a1e-9c1f-4b8e-8f3e-2b1c3d4e5f60) at https://x.example/a?b=1 after 12.5 s\n"
        ),
    )
    (group,) = pipeline_status().failure_groups
    assert group.pattern == "ValueError: message <hex> of <email> (<uuid>) at <url> after <n> s"
    assert group.latest_job_id == job.pk and group.error_class == "ValueError"
    assert error_class("lease expired: the worker stopped") == ""


def test_a_groups_count_links_to_exactly_its_jobs(staff_client, user, other_user):
    built = build(user, other_user)
    html = staff_client.get(reverse(PAGE)).content.decode()
    status = pipeline_status()
    index = next(i for i, g in enumerate(status.failure_groups) if g.kind == "flaky")
    (url,) = [href for path, _, href in figures(html) if path == f"failureGroups.{index}.count"]
    listed = staff_client.get(url.replace("&amp;", "&"))
    assert listed.status_code == 200
    assert {j.pk for j in listed.context["cl"].result_list} == {
        j.pk for j in built.upstream_failures
    }


def test_every_figures_link_opens_a_changelist(staff_client, user, other_user):
    build(user, other_user)
    html = staff_client.get(reverse(PAGE)).content.decode()
    links = {href.replace("&amp;", "&") for _, _, href in figures(html) if href}
    assert len(links) > 30
    for link in links:
        response = staff_client.get(link)
        assert response.status_code == 200, link
        assert "?e=1" not in response.request.get("QUERY_STRING", ""), link


def test_queue_and_running_figures(user, other_user):
    built = build(user, other_user)
    status = pipeline_status()
    record = next(row for row in status.queue if row.kind == "record")
    assert (record.queued, record.due) == (3, 2)  # the later one is not due
    assert status.oldest_due_kind == "record" and status.oldest_due_age_s >= 20 * 60 - 5
    (running,) = status.running
    assert running.id == built.running.pk and 85 <= running.lease_age_s <= 200
    assert 500 <= running.lease_left_s <= 640


def test_accounts_show_sync_state_and_quota(user, other_user):
    build(user, other_user)
    ada, bob = pipeline_status().accounts
    gmail, calendar = ada.providers
    assert (gmail.pending_ids, gmail.pass_listed, gmail.pass_fetched) == (3, 10, 7)
    assert gmail.pass_open and gmail.failed_items == 1
    assert 290 <= gmail.cursor_age_s <= 400
    assert gmail.quota_last_minute == 25 and gmail.quota_today == 25
    assert calendar.quota_last_minute == 3 and calendar.cursor_age_s >= 50 * 60 - 5
    assert bob.needs_reauth and bob.providers[0].last_sync_at is None


def test_later_stages_appear_when_their_kind_is_registered(monkeypatch):
    from jobs import dispatcher

    for later in ("embed", "generate_insights"):
        monkeypatch.delitem(dispatcher.REGISTRY, later, raising=False)
    assert "embed" not in pipeline_kinds() and "generate_insights" not in pipeline_kinds()
    spec = dispatcher.REGISTRY["noop"]
    monkeypatch.setitem(dispatcher.REGISTRY, "embed", spec)
    monkeypatch.setitem(dispatcher.REGISTRY, "generate_insights", spec)
    kinds = pipeline_kinds()
    assert kinds.index("extract_contacts") < kinds.index("generate_insights")
    assert kinds.index("normalize_gmail") < kinds.index("embed")


def test_throughput_counts_jobs_per_hour_they_finished_in(user):
    now = timezone.now()
    for hours_ago, status in ((0, "succeeded"), (0, "failed"), (3, "succeeded"), (30, "failed")):
        Job.objects.create(
            user=user, kind="record", status=status, finished_at=now - timedelta(hours=hours_ago)
        )
    buckets = pipeline_status().throughput
    assert len(buckets) == 24
    assert (buckets[-1].succeeded, buckets[-1].failed) == (1, 1)
    assert buckets[-4].succeeded == 1
    assert sum(b.succeeded + b.failed for b in buckets) == 3  # 30 h ago is outside the window


def test_accounts_show_push_health_on_the_page_and_in_the_figures(
    staff_client, user, other_user, pipeline_config
):
    from jobs.models import GoogleAccount, PushChannel, PushChannelStatus

    build(user, other_user)
    ada = pipeline_status().accounts[0]
    assert [p.push for p in ada.providers] == ["off", "off"]  # push not configured

    pipeline_config(
        push_gmail_topic="projects/p/topics/gmail",
        push_gmail_audience="https://crm.example/google/push/gmail/",
        push_gmail_service_account="push@p.iam.gserviceaccount.com",
    )
    account = GoogleAccount.objects.get(pk=ada.id)
    assert pipeline_status().accounts[0].providers[0].push == "failing: no watch yet"
    PushChannel.objects.create(
        user=user,
        account=account,
        provider="gmail",
        channel_id="watch-1",
        status=PushChannelStatus.ACTIVE,
        expires_at=timezone.now() + timedelta(days=6),
    )
    gmail = pipeline_status().accounts[0].providers[0]
    assert gmail.push == "healthy"
    page = staff_client.get(reverse(PAGE)).content.decode()
    assert 'data-figure="accounts.0.providers.0.push" data-value="healthy"' in page
