"""Finished runs folded into totals per kind and status: what /metrics exposes as counters.

Prometheus counters must only go up and must agree whichever web process answers a scrape.
Totals kept in the database do both: every scrape folds the jobs that finished since the last
fold (`RunTotalsMark`, one row) into `RunTotals` (jobs.metrics.run_totals_fold), so a scrape
reads only the runs that are new, never the whole job table.
"""

from __future__ import annotations

from django.db import models

# Upper bounds (seconds) of the run-duration histogram's buckets; +Inf is implied.
DURATION_BUCKETS_S: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 15, 30, 60, 120, 300, 600, 1200)


class RunTotals(models.Model):
    """Runs of one kind that ended with one status, since the first fold."""

    kind = models.CharField(max_length=64)
    status = models.CharField(max_length=16)
    runs = models.BigIntegerField(default=0)
    # Runs with a start and an end (a job cancelled before it ran has no duration).
    timed_runs = models.BigIntegerField(default=0)
    duration_s_sum = models.FloatField(default=0.0)
    # Cumulative counts per DURATION_BUCKETS_S bound (runs that took at most that long).
    duration_buckets = models.JSONField(default=list)
    items_fetched = models.BigIntegerField(default=0)
    items_inserted = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "status"], name="run_totals_kind_status_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}: {self.runs}"


class RunTotalsMark(models.Model):
    """How far the folds have read: the last folded job's finished_at and id (one row)."""

    finished_at = models.DateTimeField()
    job_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"folded up to {self.finished_at} (job {self.job_id})"
