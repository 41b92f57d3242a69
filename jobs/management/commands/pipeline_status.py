"""The pipeline page's figures in a terminal or for cron: exit status 0 when healthy."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.status import PipelineStatus, pipeline_status

UNHEALTHY_EXIT = 2


class Command(BaseCommand):
    help = (
        "Print the pipeline's figures (the admin's pipeline page: jobs per kind and status, "
        "failures, queue, running jobs, raw events, accounts, quota). Exits 0 when healthy, "
        f"{UNHEALTHY_EXIT} when a health threshold (CRM_PIPELINE health_* keys) is exceeded, "
        'with each reason on stderr (and under "problems" with --json).'
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        status = pipeline_status()
        if options["json"]:
            self.stdout.write(json.dumps(status.as_dict(), ensure_ascii=False))
        elif options["verbosity"] >= 1:
            self.stdout.write(render_text(status))
        for problem in status.problems:
            self.stderr.write(f"unhealthy ({problem.check}): {problem.reason}")
        if status.problems:
            raise CommandError(
                f"{len(status.problems)} health check(s) failed", returncode=UNHEALTHY_EXIT
            )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render_text(status: PipelineStatus) -> str:
    """The figures as a few aligned tables."""
    lines = [
        f"pipeline at {status.now:%Y-%m-%d %H:%M:%S} UTC (jobs of the last "
        f"{status.window_hours} h)",
        "",
    ]
    statuses = list(status.kinds[0].by_status) if status.kinds else []
    lines.append(f"{'kind':<22}" + "".join(f"{s:>11}" for s in statuses))
    for row in status.kinds:
        lines.append(f"{row.kind:<22}" + "".join(f"{row.by_status[s]:>11}" for s in statuses))
    lines += [
        "",
        f"{'queue':<22}{'queued':>9}{'retrying':>9}{'due':>9}{'running':>9}{'oldest due':>12}",
    ]
    for q in status.queue:
        lines.append(
            f"{q.kind:<22}{q.queued:>9}{q.retrying:>9}{q.due:>9}{q.running:>9}"
            f"{_age(q.oldest_due_age_s):>12}"
        )
    lines += [
        "",
        f"failed jobs: {status.failed_in_window} in the window, {status.failed_total} in all",
    ]
    for group in status.failure_groups:
        lines.append(f"{group.count:>7}  {group.kind:<20} {group.pattern}")
    raw = status.raw_events
    rate = status.failure_rate
    lines += [
        "",
        f"raw events: {raw.pending} pending, {raw.stale_pending} pending > "
        f"{raw.stale_after_s:g}s ({raw.stale_uncovered} with no job), "
        f"{raw.failed} failed to normalize",
        f"failure rate: {rate.failed}/{rate.finished} over {rate.window_s:g}s",
        "quota: "
        + ", ".join(
            f"{q.api} {q.last_minute:g} last minute, {q.today:g} today" for q in status.quota
        ),
        "",
        f"{'account':<34}{'status':<14}{'provider':<10}{'last sync':>11}{'pending':>9}"
        f"{'fetched/listed':>16}{'quota 1m':>10}{'today':>9}",
    ]
    for account in status.accounts:
        for p in account.providers:
            last = _age((status.now - p.last_sync_at).total_seconds()) if p.last_sync_at else "-"
            lines.append(
                f"{account.email:<34}{account.status:<14}{p.provider:<10}{last:>11}"
                f"{p.pending_ids:>9}{f'{p.pass_fetched}/{p.pass_listed}':>16}"
                f"{p.quota_last_minute:>10g}{p.quota_today:>9g}"
            )
    if status.reconcile_gaps:
        lines += [
            "",
            f"{'reconciliation gaps':<34}{'provider':<10}{'status':<9}{'last run':>10}"
            f"{'listed':>8}{'stored':>8}{'missing':>9}{'fetched':>9}{'extra':>7}",
        ]
        for gap in status.reconcile_gaps:
            age = _age((status.now - gap.started_at).total_seconds())
            lines.append(
                f"{gap.email:<34}{gap.provider:<10}{gap.status:<9}{age:>10}{gap.listed:>8}"
                f"{gap.stored:>8}{gap.missing:>9}{gap.fetched:>9}{gap.extra:>7}"
            )
    lines += ["", "healthy" if status.healthy else f"UNHEALTHY: {len(status.problems)} problem(s)"]
    return "\n".join(lines)
