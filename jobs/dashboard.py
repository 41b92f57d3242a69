"""The admin's pipeline page: `jobs.status.pipeline_status()` laid out as figures, each with
the changelist behind it, and two inline SVG charts (no JavaScript, nothing from a CDN).

Every figure carries `data-figure` (its path in `PipelineStatus.as_dict()`, the JSON of
`manage.py pipeline_status --json`) and `data-value` (the raw number), so a test can check
that the page and the command show the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from html import escape as _escape
from typing import Any
from urllib.parse import urlencode

from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse
from django.utils.safestring import SafeString, mark_safe

from jobs.models import GoogleAccountStatus, JobStatus
from jobs.status import PipelineStatus

STATUS_COLOURS: dict[str, str] = {
    JobStatus.QUEUED: "#79aec8",
    JobStatus.RUNNING: "#417690",
    JobStatus.RETRYING: "#e0a030",
    JobStatus.SUCCEEDED: "#5a9e4b",
    JobStatus.FAILED: "#ba2121",
    JobStatus.CANCELLED: "#9a9a9a",
}
KIND_CHART_WIDTH = 560
KIND_LABEL_WIDTH = 170
BAR_HEIGHT = 18
HOUR_CHART_HEIGHT = 120
HOUR_BAR_WIDTH = 22


@dataclass(frozen=True, slots=True)
class Figure:
    """One number on the page: what it shows, its JSON path, and the changelist behind it."""

    path: str
    value: Any
    text: str
    url: str | None = None

    def __html__(self) -> SafeString:
        """Rendered here, every part escaped, rather than by an {% include %} or format_html:
        the page shows thousands of figures at 200 accounts, and those cost most of its time."""
        value = "" if self.value is None else str(self.value)
        attrs = f'class="figure" data-figure="{_escape(self.path)}" data-value="{_escape(value)}"'
        if self.url:
            return mark_safe(f'<a href="{_escape(self.url)}" {attrs}>{_escape(self.text)}</a>')
        return mark_safe(f"<span {attrs}>{_escape(self.text)}</span>")

    def __str__(self) -> str:
        return self.__html__()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@lru_cache(maxsize=64)
def _changelist_base(model: str, urlconf: str | None, prefix: str) -> str:
    return reverse(f"admin:jobs_{model}_changelist", urlconf=urlconf)


def _changelist(model: str, **params: Any) -> str:
    url = _changelist_base(model, get_urlconf(), get_script_prefix())
    query = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in params.items()}
    return f"{url}?{urlencode(query)}" if query else url


def jobs_url(**params: Any) -> str:
    """The job changelist filtered by `params` (admin lookups: kind, status__exact, ...)."""
    return _changelist("job", **params)


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def _number(path: str, value: float | int, url: str | None = None) -> Figure:
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"
    return Figure(path=path, value=value, text=text, url=url)


def _age(path: str, seconds: float | None, url: str | None = None) -> Figure:
    return Figure(path=path, value=seconds, text=age_text(seconds), url=url)


def reconnect_url(email: str) -> str | None:
    """The Google connect page preselecting the account, where the host project has it."""
    try:
        return f"{reverse('google:connect')}?{urlencode({'email': email})}"
    except NoReverseMatch:
        return None


def pipeline_context(status: PipelineStatus) -> dict[str, Any]:
    """Everything the template shows, as Figures and chart shapes."""
    since, now = status.since, status.now
    statuses = list(JobStatus.values)
    kinds = []
    for i, row in enumerate(status.kinds):
        cells = [
            _number(
                f"kinds.{i}.byStatus.{s}",
                row.by_status[s],
                jobs_url(kind=row.kind, status__exact=s, created_at__gte=since),
            )
            for s in statuses
        ]
        total = _number(
            f"kinds.{i}.total", row.total, jobs_url(kind=row.kind, created_at__gte=since)
        )
        kinds.append({"kind": row.kind, "cells": cells, "total": total})
    queue = []
    for i, q in enumerate(status.queue):
        waiting = {"kind": q.kind, "status__in": f"{JobStatus.QUEUED},{JobStatus.RETRYING}"}
        due = jobs_url(**waiting, run_after__lte=now)
        queue.append(
            {
                "kind": q.kind,
                "queued": _number(
                    f"queue.{i}.queued", q.queued, jobs_url(kind=q.kind, status__exact="queued")
                ),
                "retrying": _number(
                    f"queue.{i}.retrying",
                    q.retrying,
                    jobs_url(kind=q.kind, status__exact="retrying"),
                ),
                "due": _number(f"queue.{i}.due", q.due, due),
                "running": _number(
                    f"queue.{i}.running", q.running, jobs_url(kind=q.kind, status__exact="running")
                ),
                "oldest": _age(f"queue.{i}.oldestDueAgeS", q.oldest_due_age_s, due),
            }
        )
    groups = []
    for i, group in enumerate(status.failure_groups):
        groups.append(
            {
                "group": group,
                "count": _number(
                    f"failureGroups.{i}.count",
                    group.count,
                    jobs_url(
                        kind=group.kind,
                        status__exact=JobStatus.FAILED,
                        finished_at__gte=since,
                        error_pattern=group.pattern,
                    ),
                ),
                "latest": Figure(
                    path=f"failureGroups.{i}.latestJobId",
                    value=group.latest_job_id,
                    text=f"#{group.latest_job_id}",
                    url=reverse("admin:jobs_job_change", args=[group.latest_job_id]),
                ),
            }
        )
    running = [
        {
            "job": job,
            "id": Figure(
                f"running.{i}.id",
                job.id,
                f"#{job.id}",
                reverse("admin:jobs_job_change", args=[job.id]),
            ),
            "age": _age(f"running.{i}.leaseAgeS", job.lease_age_s),
            "left": _age(f"running.{i}.leaseLeftS", job.lease_left_s),
        }
        for i, job in enumerate(status.running)
    ]
    raw = status.raw_events
    stale_before = now - timedelta(seconds=raw.stale_after_s)
    raw_figures = {
        "pending": _number(
            "rawEvents.pending", raw.pending, _changelist("rawevent", status__exact="pending")
        ),
        "stale": _number(
            "rawEvents.stalePending",
            raw.stale_pending,
            _changelist("rawevent", status__exact="pending", updated_at__lt=stale_before),
        ),
        "uncovered": _number("rawEvents.staleUncovered", raw.stale_uncovered),
        "failed": _number(
            "rawEvents.failed", raw.failed, _changelist("rawevent", status__exact="failed")
        ),
    }
    accounts = []
    for i, account in enumerate(status.accounts):
        providers = []
        for j, p in enumerate(account.providers):
            base = f"accounts.{i}.providers.{j}"
            states = _changelist(
                "syncstate", account__id__exact=account.id, provider__exact=p.provider
            )
            providers.append(
                {
                    "sync": p,
                    "last": Figure(
                        f"{base}.lastSyncAt",
                        _iso(p.last_sync_at) if p.last_sync_at else None,
                        age_text((now - p.last_sync_at).total_seconds())
                        if p.last_sync_at
                        else "never",
                        states,
                    ),
                    "cursor": _age(f"{base}.cursorAgeS", p.cursor_age_s, states),
                    "pending": _number(f"{base}.pendingIds", p.pending_ids, states),
                    "listed": _number(f"{base}.passListed", p.pass_listed, states),
                    "fetched": _number(f"{base}.passFetched", p.pass_fetched, states),
                    "failed": _number(f"{base}.failedItems", p.failed_items, states),
                    "minute": _number(f"{base}.quotaLastMinute", p.quota_last_minute),
                    "today": _number(f"{base}.quotaToday", p.quota_today),
                    "push": Figure(
                        f"{base}.push",
                        p.push,
                        p.push,
                        _changelist(
                            "pushchannel", account__id__exact=account.id, provider__exact=p.provider
                        ),
                    ),
                }
            )
        accounts.append(
            {
                "account": account,
                "url": reverse("admin:jobs_googleaccount_change", args=[account.id]),
                "reconnect": reconnect_url(account.email) if account.needs_reauth else None,
                "providers": providers,
            }
        )
    reconcile = []
    for i, gap in enumerate(status.reconcile_gaps):
        base = f"reconcileGaps.{i}"
        runs = _changelist(
            "reconcilerun", account__id__exact=gap.account_id, provider__exact=gap.provider
        )
        reconcile.append(
            {
                "gap": gap,
                "account_url": reverse("admin:jobs_googleaccount_change", args=[gap.account_id]),
                "run": Figure(
                    f"{base}.startedAt",
                    _iso(gap.started_at),
                    age_text((now - gap.started_at).total_seconds()) + " ago",
                    reverse("admin:jobs_reconcilerun_change", args=[gap.run_id]),
                ),
                "runs": runs,
                "listed": _number(f"{base}.listed", gap.listed, runs),
                "stored": _number(f"{base}.stored", gap.stored, runs),
                "missing": _number(f"{base}.missing", gap.missing, runs),
                "fetched": _number(f"{base}.fetched", gap.fetched, runs),
                "unfetched": _number(f"{base}.unfetched", gap.unfetched, runs),
                "extra": _number(f"{base}.extra", gap.extra, runs),
            }
        )
    rate = status.failure_rate
    rate_start = now - timedelta(seconds=rate.window_s)
    summary = {
        "waiting": _number(
            "waitingTotal",
            status.waiting_total,
            jobs_url(status__in=f"{JobStatus.QUEUED},{JobStatus.RETRYING}"),
        ),
        "due": _number(
            "dueTotal",
            status.due_total,
            jobs_url(status__in=f"{JobStatus.QUEUED},{JobStatus.RETRYING}", run_after__lte=now),
        ),
        "oldest": _age(
            "oldestDueAgeS",
            status.oldest_due_age_s,
            jobs_url(
                kind=status.oldest_due_kind or "",
                status__in=f"{JobStatus.QUEUED},{JobStatus.RETRYING}",
                run_after__lte=now,
            )
            if status.oldest_due_kind
            else None,
        ),
        "running": _number(
            "runningTotal", status.running_total, jobs_url(status__exact=JobStatus.RUNNING)
        ),
        "failed_window": _number(
            "failedInWindow",
            status.failed_in_window,
            jobs_url(status__exact=JobStatus.FAILED, finished_at__gte=since),
        ),
        "failed_total": _number(
            "failedTotal", status.failed_total, jobs_url(status__exact=JobStatus.FAILED)
        ),
        "rate_failed": _number(
            "failureRate.failed",
            rate.failed,
            jobs_url(status__exact=JobStatus.FAILED, finished_at__gt=rate_start),
        ),
        "rate_finished": _number(
            "failureRate.finished",
            rate.finished,
            jobs_url(
                status__in=f"{JobStatus.SUCCEEDED},{JobStatus.FAILED}", finished_at__gt=rate_start
            ),
        ),
        "reauth": _number(
            "needsReauth.length",
            len(status.needs_reauth),
            _changelist("googleaccount", status__exact=GoogleAccountStatus.NEEDS_REAUTH),
        ),
    }
    quota = [
        {
            "api": q.api,
            "minute": _number(f"quota.{i}.lastMinute", q.last_minute),
            "today": _number(f"quota.{i}.today", q.today),
        }
        for i, q in enumerate(status.quota)
    ]
    return {
        "status": status,
        "statuses": [(s, STATUS_COLOURS[s]) for s in statuses],
        "kinds": kinds,
        "kind_chart": kind_chart(status),
        "hour_chart": hour_chart(status),
        "queue": queue,
        "groups": groups,
        "running": running,
        "raw": raw_figures,
        "accounts": accounts,
        "reconcile": reconcile,
        "reconcile_runs_url": _changelist("reconcilerun"),
        "summary": summary,
        "quota": quota,
    }


def kind_chart(status: PipelineStatus) -> dict[str, Any]:
    """Jobs per kind as horizontal bars stacked by status, scaled to the largest kind."""
    largest = max((row.total for row in status.kinds), default=0) or 1
    scale = (KIND_CHART_WIDTH - KIND_LABEL_WIDTH - 60) / largest
    rows = []
    for i, row in enumerate(status.kinds):
        x = float(KIND_LABEL_WIDTH)
        segments = []
        for job_status, count in row.by_status.items():
            if not count:
                continue
            width = max(count * scale, 1.5)
            segments.append(
                {
                    "x": round(x, 1),
                    "width": round(width, 1),
                    "colour": STATUS_COLOURS[job_status],
                    "title": f"{row.kind}: {count} {job_status}",
                    "url": jobs_url(
                        kind=row.kind, status__exact=job_status, created_at__gte=status.since
                    ),
                }
            )
            x += width
        rows.append(
            {
                "y": i * (BAR_HEIGHT + 6),
                "text_y": i * (BAR_HEIGHT + 6) + BAR_HEIGHT - 5,
                "kind": row.kind,
                "total": row.total,
                "total_x": round(x + 6, 1),
                "segments": segments,
            }
        )
    return {
        "width": KIND_CHART_WIDTH,
        "height": max(len(rows), 1) * (BAR_HEIGHT + 6),
        "label_x": KIND_LABEL_WIDTH - 8,
        "bar_height": BAR_HEIGHT,
        "rows": rows,
    }


def hour_chart(status: PipelineStatus) -> dict[str, Any]:
    """Jobs finished per hour (succeeded, failed, cancelled stacked), oldest hour first."""
    largest = max((b.succeeded + b.failed + b.cancelled for b in status.throughput), default=0)
    scale = (HOUR_CHART_HEIGHT - 20) / (largest or 1)
    bars = []
    for i, bucket in enumerate(status.throughput):
        x = 30 + i * (HOUR_BAR_WIDTH + 4)
        y = float(HOUR_CHART_HEIGHT - 16)
        segments = []
        for job_status, count in (
            (JobStatus.SUCCEEDED, bucket.succeeded),
            (JobStatus.FAILED, bucket.failed),
            (JobStatus.CANCELLED, bucket.cancelled),
        ):
            if not count:
                continue
            height = max(count * scale, 1.5)
            y -= height
            segments.append(
                {
                    "y": round(y, 1),
                    "height": round(height, 1),
                    "colour": STATUS_COLOURS[job_status],
                    "title": f"{bucket.start:%H}:00 UTC: {count} {job_status}",
                    "url": jobs_url(
                        status__exact=job_status,
                        finished_at__gte=bucket.start,
                        finished_at__lt=bucket.start + timedelta(hours=1),
                    ),
                }
            )
        bars.append(
            {
                "x": x,
                "label": f"{bucket.start:%H}",
                "label_x": x + HOUR_BAR_WIDTH / 2,
                "segments": segments,
            }
        )
    return {
        "width": 30 + len(bars) * (HOUR_BAR_WIDTH + 4),
        "height": HOUR_CHART_HEIGHT,
        "bar_width": HOUR_BAR_WIDTH,
        "label_y": HOUR_CHART_HEIGHT - 3,
        "largest": largest,
        "bars": bars,
    }
