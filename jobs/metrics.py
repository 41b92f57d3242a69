"""Prometheus metrics, computed from the database at scrape time.

Workers run in many processes on many hosts, and a scrape may reach any web process: counters
kept in process memory would disagree from one scrape to the next. So the collector reads the
database when scraped: gauges from `jobs.status.pipeline_status` (the figures of the pipeline
page), counters from `RunTotals`, into which each scrape first folds the jobs that finished
since the previous fold (`run_totals_fold`): totals that only go up, whichever process answers,
for the cost of reading the new runs only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db import connection, transaction
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from jobs.models import Job, JobStatus, RunTotals, RunTotalsMark
from jobs.models.run_totals import DURATION_BUCKETS_S
from jobs.status import HEALTH_CHECKS, pipeline_status

# A run is folded once it finished this long ago: an outcome is written by one short
# statement, so a row whose finished_at is older than this has committed, and the mark
# never passes a run that is still to appear.
FOLD_LAG_S = 30.0
_FOLD_LOCK = (0x51_07A, 0x70_01D)  # advisory lock: one fold at a time
_JOB = Job._meta.db_table


def _number(key: str) -> str:
    return (
        f"CASE WHEN jsonb_typeof(metrics -> '{key}') = 'number' "
        f"THEN (metrics ->> '{key}')::numeric ELSE 0 END"
    )


_DURATION = "EXTRACT(EPOCH FROM finished_at - started_at)"
_BUCKETS = ", ".join(
    f"count(*) FILTER (WHERE {_DURATION} <= {bound})" for bound in DURATION_BUCKETS_S
)
_FOLD_SQL = f"""
SELECT kind, status, count(*), count(started_at), COALESCE(sum({_DURATION}), 0),
       {_BUCKETS},
       COALESCE(sum({_number("itemsFetched")}), 0), COALESCE(sum({_number("itemsInserted")}), 0)
  FROM {_JOB}
 WHERE finished_at IS NOT NULL AND finished_at <= %(upto)s
       AND finished_at >= %(mark_at)s AND (finished_at, id) > (%(mark_at)s, %(mark_id)s)
 GROUP BY kind, status
"""
_LAST_SQL = f"""
SELECT finished_at, id FROM {_JOB}
 WHERE finished_at IS NOT NULL AND finished_at <= %(upto)s
       AND finished_at >= %(mark_at)s AND (finished_at, id) > (%(mark_at)s, %(mark_id)s)
 ORDER BY finished_at DESC, id DESC LIMIT 1
"""
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def run_totals_fold() -> int:
    """Add the runs that finished since the last fold to RunTotals; how many were added.

    Reads through job_finished_idx from the mark on. A job that runs again (a retry) finishes
    again with a later finished_at and is counted as another run.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _FOLD_LOCK)
        mark = RunTotalsMark.objects.select_for_update().order_by("pk").first()
        cursor.execute("SELECT statement_timestamp() - make_interval(secs => %s)", [FOLD_LAG_S])
        params = {
            "upto": cursor.fetchone()[0],
            "mark_at": mark.finished_at if mark else _EPOCH,
            "mark_id": mark.job_id if mark else 0,
        }
        cursor.execute(_FOLD_SQL, params)
        groups = cursor.fetchall()
        if not groups:
            return 0
        cursor.execute(_LAST_SQL, params)
        last_at, last_id = cursor.fetchone()
        existing = {
            (t.kind, t.status): t
            for t in RunTotals.objects.select_for_update().filter(kind__in={g[0] for g in groups})
        }
        folded = 0
        for kind, status, runs, timed, duration, *rest in groups:
            buckets, (fetched, inserted) = rest[: len(DURATION_BUCKETS_S)], rest[-2:]
            totals = existing.get((kind, status)) or RunTotals(kind=kind, status=status)
            old = list(totals.duration_buckets or [])
            old += [0] * (len(DURATION_BUCKETS_S) - len(old))
            totals.runs += runs
            totals.timed_runs += timed
            totals.duration_s_sum += float(duration)
            totals.duration_buckets = [a + b for a, b in zip(old, buckets, strict=False)]
            totals.items_fetched += int(fetched)
            totals.items_inserted += int(inserted)
            totals.save()
            folded += runs
        if mark is None:
            mark = RunTotalsMark(finished_at=last_at, job_id=last_id)
        mark.finished_at, mark.job_id = last_at, last_id
        mark.save()
    return folded


class PipelineCollector(Collector):
    """Every metric of the pipeline, read from the database at scrape time."""

    def collect(self) -> Iterator[Metric]:
        run_totals_fold()
        yield from _counters()
        yield from _gauges()


def _counters() -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "crm_pipeline_job_runs",
        "Job runs that finished, by kind and outcome.",
        labels=["kind", "status"],
    )
    durations = HistogramMetricFamily(
        "crm_pipeline_job_run_duration_seconds",
        "How long finished runs took (claim to outcome), by kind and outcome.",
        labels=["kind", "status"],
    )
    fetched = CounterMetricFamily(
        "crm_pipeline_job_items_fetched", "Items fetched by finished runs.", labels=["kind"]
    )
    inserted = CounterMetricFamily(
        "crm_pipeline_job_items_inserted", "Items inserted by finished runs.", labels=["kind"]
    )
    by_kind: dict[str, list[int]] = {}
    for totals in RunTotals.objects.order_by("kind", "status"):
        labels = [totals.kind, totals.status]
        runs.add_metric(labels, totals.runs)
        buckets = list(totals.duration_buckets or [])
        buckets += [buckets[-1] if buckets else 0] * (len(DURATION_BUCKETS_S) - len(buckets))
        durations.add_metric(
            labels,
            [
                *(
                    (f"{bound:g}", count)
                    for bound, count in zip(DURATION_BUCKETS_S, buckets, strict=False)
                ),
                ("+Inf", totals.timed_runs),
            ],
            sum_value=totals.duration_s_sum,
        )
        sums = by_kind.setdefault(totals.kind, [0, 0])
        sums[0] += totals.items_fetched
        sums[1] += totals.items_inserted
    for kind, (kind_fetched, kind_inserted) in sorted(by_kind.items()):
        fetched.add_metric([kind], kind_fetched)
        inserted.add_metric([kind], kind_inserted)
    yield from (runs, durations, fetched, inserted)


def _gauges() -> Iterator[Metric]:
    status = pipeline_status()
    jobs = GaugeMetricFamily(
        "crm_pipeline_jobs_active",
        "Jobs waiting or running now, by kind and status.",
        labels=["kind", "status"],
    )
    due = GaugeMetricFamily(
        "crm_pipeline_queue_due", "Waiting jobs whose time has come, by kind.", labels=["kind"]
    )
    for row in status.queue:
        jobs.add_metric([row.kind, JobStatus.QUEUED], row.queued)
        jobs.add_metric([row.kind, JobStatus.RETRYING], row.retrying)
        jobs.add_metric([row.kind, JobStatus.RUNNING], row.running)
        due.add_metric([row.kind], row.due)
    created = GaugeMetricFamily(
        "crm_pipeline_jobs_created_last_24h",
        "Jobs created in the last 24 hours, by kind and their status now.",
        labels=["kind", "status"],
    )
    for kind_row in status.kinds:
        for job_status, count in kind_row.by_status.items():
            created.add_metric([kind_row.kind, job_status], count)
    yield from (jobs, due, created)
    yield GaugeMetricFamily(
        "crm_pipeline_oldest_due_job_age_seconds",
        "How long the oldest due job has waited for a worker (0 when none is due).",
        value=status.oldest_due_age_s or 0.0,
    )
    raw = status.raw_events
    raw_events = GaugeMetricFamily(
        "crm_pipeline_raw_events", "Raw events by normalization state.", labels=["state"]
    )
    raw_events.add_metric(["pending"], raw.pending)
    raw_events.add_metric(["stale_pending"], raw.stale_pending)
    raw_events.add_metric(["stale_uncovered"], raw.stale_uncovered)
    raw_events.add_metric(["failed"], raw.failed)
    yield raw_events
    quota = GaugeMetricFamily(
        "crm_pipeline_google_quota_units",
        "Google quota spent by every account (project scope): over the last minute and the "
        "UTC day so far (units for Gmail, requests for Calendar).",
        labels=["api", "period"],
    )
    for spent in status.quota:
        quota.add_metric([spent.api, "last_minute"], spent.last_minute)
        quota.add_metric([spent.api, "today"], spent.today)
    yield quota
    yield GaugeMetricFamily(
        "crm_pipeline_accounts_needing_reauth",
        "Google accounts whose user must reconnect them.",
        value=len(status.needs_reauth),
    )
    yield GaugeMetricFamily(
        "crm_pipeline_failure_rate",
        f"Share of the jobs finished over the health window "
        f"({status.failure_rate.window_s:g} s) that failed.",
        value=status.failure_rate.rate,
    )
    health = GaugeMetricFamily(
        "crm_pipeline_healthy",
        "1 when no health threshold is exceeded (as manage.py pipeline_status), else 0; one "
        "series per check.",
        labels=["check"],
    )
    failing = {problem.check for problem in status.problems}
    for check in HEALTH_CHECKS:
        health.add_metric([check], 0.0 if check in failing else 1.0)
    yield health


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(PipelineCollector())
