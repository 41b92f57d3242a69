"""Start a Gmail and/or Calendar sync for one user, and optionally follow its chain to the end."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job, JobStatus
from jobs.selectors import UserNotFound, user_find
from jobs.sync.enqueue import (
    SyncTargetError,
    batch_active,
    batch_jobs,
    batch_run_next_due,
    sync_accounts,
    sync_enqueue,
)

PROVIDERS = {"gmail": ["gmail"], "calendar": ["calendar"], "all": ["gmail", "calendar"]}
NO_CLUSTER_HINT_AFTER_S = 10.0
POLL_S = 0.5


class Command(BaseCommand):
    help = (
        "Enqueue gmail_sync / calendar_sync for each active Google account of a user (username, "
        "e-mail or id), or for one with --account. With --wait, "
        "follow the chain (continuations and later stages) and print each job as it finishes."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or user id")
        parser.add_argument("--provider", choices=sorted(PROVIDERS), default="all")
        parser.add_argument(
            "--account",
            metavar="EMAIL",
            help="sync only this Google account of the user (default: every active account)",
        )
        parser.add_argument(
            "--full", action="store_true", help="relist the initial window, ignoring cursors"
        )
        parser.add_argument(
            "--wait", action="store_true", help="wait until every job of the batch has finished"
        )
        parser.add_argument(
            "--inline",
            action="store_true",
            help="run the batch's jobs in this process instead of waiting for a qcluster "
            "(implies --wait)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        identifier = options["user"]
        try:
            user = user_find(identifier=identifier)
            accounts = sync_accounts(user=user, identifier=identifier, email=options["account"])
        except (UserNotFound, SyncTargetError) as exc:
            raise CommandError(str(exc)) from None
        started = sync_enqueue(
            accounts=accounts, providers=PROVIDERS[options["provider"]], full=options["full"]
        )
        for item in started:
            state = (
                f"job #{item.job.pk} queued" if item.created else f"already active: #{item.job.pk}"
            )
            self.stdout.write(f"{item.kind} ({item.account.email}): {state}")
        batch_ids = {item.job.batch_id for item in started}
        self.stdout.write("batch " + ", ".join(str(batch) for batch in sorted(batch_ids, key=str)))
        if options["wait"] or options["inline"]:
            self._follow(batch_ids, inline=options["inline"], verbosity=options["verbosity"])

    def _follow(self, batch_ids: set, *, inline: bool, verbosity: int) -> None:
        reported: set[tuple[int, int, str]] = set()
        started = time.monotonic()
        hinted = False
        while True:
            ran = batch_run_next_due(batch_ids=batch_ids) if inline else None
            jobs = batch_jobs(batch_ids=batch_ids)
            for job in jobs:
                key = (job.pk, job.attempts, job.status)
                if job.status in (JobStatus.QUEUED, JobStatus.RUNNING) or key in reported:
                    continue
                reported.add(key)
                self._report(job, verbosity)
            active = batch_active(jobs)
            if not active:
                break
            unclaimed = all(job.status == JobStatus.QUEUED and not job.attempts for job in active)
            waited = time.monotonic() - started
            if not (inline or hinted) and unclaimed and waited > NO_CLUSTER_HINT_AFTER_S:
                hinted = True
                self.stderr.write(
                    "no job has started after 10 s: is a cluster running (manage.py qcluster)? "
                    "Or rerun with --inline."
                )
            if ran is None:
                time.sleep(POLL_S)
        failed = [job for job in jobs if job.status != JobStatus.SUCCEEDED]
        summary = f"chain finished: {len(jobs) - len(failed)} succeeded"
        if failed:
            raise CommandError(
                f"{summary}, {len(failed)} not: "
                + ", ".join(f"#{job.pk} {job.kind} {job.status}" for job in failed)
            )
        self.stdout.write(summary)

    def _report(self, job: Job, verbosity: int) -> None:
        line = f"#{job.pk} {job.kind} {job.status}"
        if job.status == JobStatus.RETRYING:
            line += f" (attempt {job.attempts}, next at {job.run_after:%H:%M:%S}): {job.last_error}"
        elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.last_error:
            line += f": {job.last_error}"
        if verbosity >= 1 and job.metrics:
            line += " " + json.dumps(job.metrics, separators=(",", ":"))
        self.stdout.write(line)
