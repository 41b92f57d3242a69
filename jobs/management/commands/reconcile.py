"""Compare a user's Google accounts with what is stored; with --fix, fetch what is missing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.models import GoogleAccount, Job, JobStatus, ReconcileRun
from jobs.models.job import ACTIVE_STATUSES, CLAIMABLE_STATUSES
from jobs.runner import run_job
from jobs.selectors import UserNotFound, user_find
from jobs.sync.enqueue import SyncTargetError, sync_accounts
from jobs.sync.reconcile import RECONCILE_KIND, RECONCILE_SAMPLE, reconcile_enqueue

PROVIDERS = {"gmail": ["gmail"], "calendar": ["calendar"], "all": ["gmail", "calendar"]}
POLL_S = 0.5
# How long to wait for a reconcile job that a worker (not this process) is running.
WAIT_FOR_WORKER_S = 900.0


class Command(BaseCommand):
    help = (
        "Reconcile each active Google account of a user (username, e-mail or id), or one with "
        "--account: list what Google holds in the sync's window and compare it with the stored "
        "raw events. Without --fix it only reports the gap (it writes the reconcile job and its "
        "run records, no raw event); with --fix it fetches the missing items and queues their "
        "normalization. Items stored but no longer at Google are reported, never deleted. "
        "Runs in this process."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or user id")
        parser.add_argument(
            "--account",
            metavar="EMAIL",
            help="reconcile only this Google account of the user (default: every active one)",
        )
        parser.add_argument("--provider", choices=sorted(PROVIDERS), default="all")
        parser.add_argument(
            "--fix", action="store_true", help="fetch the missing items (default: report only)"
        )
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        identifier = options["user"]
        try:
            user = user_find(identifier=identifier)
            accounts = sync_accounts(user=user, identifier=identifier, email=options["account"])
        except (UserNotFound, SyncTargetError) as exc:
            raise CommandError(str(exc)) from None
        fix = options["fix"]
        report = []
        failed = []
        for account in accounts:
            batch_id = uuid.uuid4()
            ((_, job, created),) = reconcile_enqueue(
                accounts=[account],
                fix=fix,
                batch_id=batch_id,
                providers=PROVIDERS[options["provider"]],
            )
            if not created:
                # Its lane holds a reconcile job already (the schedule's): report that one.
                batch_id = job.batch_id
            jobs = self._run_chain(batch_id)
            runs = list(ReconcileRun.objects.filter(job__in=jobs, account=account).order_by("id"))
            normalize = list(Job.objects.filter(batch_id=batch_id).exclude(kind=RECONCILE_KIND))
            failed += [j for j in jobs if j.status != JobStatus.SUCCEEDED]
            report.append((account, job, created, runs, normalize))
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(report, fix=fix), ensure_ascii=False))
        else:
            for line in _as_text(report, fix=fix):
                self.stdout.write(line)
        if failed:
            raise CommandError(
                "reconciliation did not finish: "
                + ", ".join(f"#{j.pk} {j.status}: {j.last_error or '-'}" for j in failed)
            )

    def _run_chain(self, batch_id: uuid.UUID) -> list[Job]:
        """Run the batch's reconcile jobs (the first and its continuations) in this process;
        one a worker holds is waited for. Returns them, finished."""
        started = time.monotonic()
        while True:
            jobs = list(Job.objects.filter(batch_id=batch_id, kind=RECONCILE_KIND).order_by("id"))
            due = [j for j in jobs if j.status in CLAIMABLE_STATUSES and not j.cancel_requested]
            if due:
                run_job(due[0].pk)
                continue
            if not any(j.status in ACTIVE_STATUSES for j in jobs):
                return jobs
            if time.monotonic() - started > WAIT_FOR_WORKER_S:
                raise CommandError(
                    "a worker is still running the reconcile job(s) "
                    + ", ".join(f"#{j.pk}" for j in jobs if j.status in ACTIVE_STATUSES)
                    + "; see the admin's reconcile runs later"
                )
            time.sleep(POLL_S)


def _run_dict(run: ReconcileRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "provider": run.provider,
        "status": run.status,
        "fix": run.fix,
        "windowStart": run.window_start.isoformat() if run.window_start else None,
        "windowEnd": run.window_end.isoformat() if run.window_end else None,
        "listed": run.provider_count,
        "stored": run.stored_count,
        "missing": run.missing_count,
        "fetched": run.fetched_count,
        "failed": run.failed_count,
        "extra": run.extra_count,
        "elsewhere": run.elsewhere_count,
        "inFlight": run.in_flight_count,
        "missingSample": run.missing_sample,
        "extraSample": run.extra_sample,
        "detail": run.detail,
    }


def _as_json(report: list, *, fix: bool) -> dict[str, Any]:
    return {
        "fix": fix,
        "accounts": [
            {
                "account": account.email,
                "job": job.pk,
                "runs": [_run_dict(run) for run in runs],
                "normalizeJobs": [j.pk for j in normalize],
            }
            for account, job, _created, runs, normalize in report
        ],
    }


def _as_text(report: list[tuple[GoogleAccount, Job, bool, list, list]], *, fix: bool) -> list[str]:
    lines = []
    gaps = 0
    for account, job, created, runs, normalize in report:
        note = "" if created else " (already queued by the schedule)"
        lines.append(f"{account.email}: reconcile job #{job.pk}{note}")
        for run in runs:
            line = (
                f"  {run.provider}: {run.status}; listed {run.provider_count}, stored "
                f"{run.stored_count}, missing {run.missing_count}, fetched {run.fetched_count}, "
                f"extra {run.extra_count}"
            )
            if run.elsewhere_count:
                line += f", held by another account {run.elsewhere_count}"
            if run.in_flight_count:
                line += f", queued by the sync {run.in_flight_count}"
            lines.append(line)
            if run.detail:
                lines.append(f"    {run.detail}")
            if run.missing_sample:
                lines.append(
                    f"    missing (up to {RECONCILE_SAMPLE}): " + ", ".join(run.missing_sample)
                )
            if run.extra_sample:
                lines.append(
                    f"    extra, not deleted (up to {RECONCILE_SAMPLE}): "
                    + ", ".join(run.extra_sample)
                )
            gaps += max(run.missing_count - run.fetched_count, 0)
        if normalize:
            lines.append(
                "  normalization queued: " + ", ".join(f"#{j.pk} {j.kind}" for j in normalize)
            )
    if gaps and not fix:
        lines.append(f"{gaps} item(s) missing: rerun with --fix to fetch them")
    return lines
