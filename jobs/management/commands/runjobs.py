"""Run due jobs in this process, without a cluster (cron deployments, debugging, tests)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.dispatcher import REGISTRY
from jobs.runner import run_due_jobs


class Command(BaseCommand):
    help = "Run due jobs inline (no qcluster needed). Returns lost leases to the queue first."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--until-empty", action="store_true", help="keep going until no job is due"
        )
        parser.add_argument("--kind", action="append", help="only this kind (repeatable)")
        parser.add_argument("--max-jobs", type=int, default=None, help="stop after N jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        kinds = options["kind"]
        unknown = sorted(set(kinds or ()) - set(REGISTRY))
        if unknown:
            raise CommandError(
                f"unknown job kind(s): {', '.join(unknown)} (known: {', '.join(sorted(REGISTRY))})"
            )
        if options["max_jobs"] is not None and options["max_jobs"] < 1:
            raise CommandError("--max-jobs must be at least 1")
        report = run_due_jobs(
            kinds=kinds,
            max_jobs=options["max_jobs"]
            if options["max_jobs"]
            else (None if options["until_empty"] else 100),
            until_empty=options["until_empty"],
            on_result=self._echo if options["verbosity"] >= 2 else None,
        )
        self.stdout.write(
            f"ran {report.ran} job(s): "
            + ", ".join(f"{n} {status}" for status, n in sorted(report.outcomes.items()))
            if report.ran
            else "no due jobs"
        )

    def _echo(self, job_id: int, status: str) -> None:
        self.stdout.write(f"job {job_id}: {status}")
