"""The pipeline's figures for operators, read in one place: the admin's pipeline page and
`manage.py pipeline_status` both render `pipeline_status()`, so they always agree.

Every query reads a bounded slice through an index (jobs/models/job.py names the index each one
uses): jobs created or finished since the window's start, waiting jobs, running jobs, failed
jobs. None scans the job table, so the page stays fast at millions of jobs (tests/jobs/
test_status_plans.py checks the plans at 1,000,000 rows; bench/admin_pipeline.py times it).
The time every figure is measured against is the database's clock (`now`), as in the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, F, Func, IntegerField, Sum

from jobs.config import PipelineConfig, get_config
from jobs.dispatcher import REGISTRY
from jobs.google import pacer
from jobs.google.push import push_health_of_rows
from jobs.models import (
    GoogleAccount,
    GoogleAccountStatus,
    Job,
    JobStatus,
    PendingRawEvent,
    Provider,
    PushChannel,
    QuotaDaily,
    QuotaUsage,
    RawEvent,
    ReconcileRun,
    ReconcileStatus,
    SyncState,
)
from jobs.models.job import ACTIVE_STATUSES
from jobs.pipeline import STAGES
from jobs.sync.sweep import covering_kinds

WINDOW_HOURS = 24
# Reconciliation runs shown: the latest per account and provider started this many days back
# (or two reconcile intervals, if longer).
RECONCILE_SHOWN_DAYS = 7
RUNNING_SHOWN = 50
FAILURE_GROUPS_SHOWN = 50
# "Quota used in the last minute": Google's own window.
QUOTA_MINUTE_S = 60.0
PATTERN_MAX_CHARS = 200
# The health checks, each with its threshold in jobs.config ("Health thresholds").
HEALTH_CHECKS = ("oldest_due_job", "failure_rate", "needs_reauth", "stale_pending_raw_events")
_JOB = Job._meta.db_table

# The error pattern of a failed job, in SQL, so the same expression groups failures on the
# page and filters the changelist behind a group: the last line of `last_error` (a
# traceback's "ValueError: ..." line), without the "attempts exhausted" prefix, with what
# varies from one job to the next (addresses, UUIDs, URLs, long hex ids, numbers) replaced by
# placeholders.
_PATTERN_STEPS: tuple[tuple[str, str], ...] = (
    (r"^attempts exhausted; last error: ", ""),
    (r"https?://[^\s'\"]+", "<url>"),
    (r"[\w.+-]+@[\w-]+(\.[\w-]+)+", "<email>"),
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    # Hex ids (Gmail message ids): 8+ hex characters with a digit and a letter, so words such
    # as "deadline" or "added" stay.
    (r"\m(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\M", "<hex>"),
    (r"\d+(\.\d+)?", "<n>"),
)


def error_pattern_sql(column: str = f"{_JOB}.last_error") -> str:
    """The SQL expression of a failed job's error pattern (see _PATTERN_STEPS); no parameters."""
    expr = f"substring(btrim({column}, E' \\t\\r\\n') from '(?:^|\\n)([^\\n]*)$')"
    for pattern, replacement in _PATTERN_STEPS:
        flags = "" if pattern.startswith("^") else ", 'g'"
        quoted = pattern.replace("'", "''")
        expr = f"regexp_replace({expr}, '{quoted}', '{replacement}'{flags})"
    return f"left({expr}, {PATTERN_MAX_CHARS})"


_CLASS_RE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def error_class(pattern: str) -> str:
    """ "TransientError" for "TransientError: HTTP <n>"; "" when the line names no class."""
    match = _CLASS_RE.match(pattern)
    return match.group(1) if match else ""


# --- the figures ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindRow:
    """Jobs of one kind created in the window, by their status now."""

    kind: str
    by_status: dict[str, int]
    total: int


@dataclass(frozen=True, slots=True)
class HourBucket:
    """Jobs that finished in one hour, by how they ended."""

    start: datetime
    succeeded: int
    failed: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class FailureGroup:
    kind: str
    error_class: str
    pattern: str
    count: int
    latest_job_id: int
    latest_at: datetime
    latest_error: str


@dataclass(frozen=True, slots=True)
class QueueRow:
    """Jobs of one kind waiting for a worker (queued or retrying), how many are due, and how
    many run now."""

    kind: str
    queued: int
    retrying: int
    due: int
    running: int
    oldest_due_at: datetime | None
    oldest_due_age_s: float | None


@dataclass(frozen=True, slots=True)
class RunningJob:
    id: int
    kind: str
    user_id: int
    locked_by: str
    started_at: datetime | None
    lease_expires_at: datetime | None
    # How long the worker has held the lease, and how long it has left.
    lease_age_s: float | None
    lease_left_s: float | None
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class ProviderSync:
    """One account's sync of one provider, over its sync states (one per calendar)."""

    provider: str
    states: int
    last_sync_at: datetime | None
    last_full_sync_at: datetime | None
    # How long ago the stalest cursor was last confirmed (None: no cursor yet).
    cursor_age_s: float | None
    pending_ids: int
    pass_open: bool
    pass_listed: int
    pass_fetched: int
    failed_items: int
    backfill_done_at: datetime | None
    quota_last_minute: float
    quota_today: float
    # Push notifications: "off" (not configured), "healthy", or "failing: <why>"
    # (jobs.google.push.push_health; polling falls back to the normal interval when not healthy)
    push: str


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: int
    email: str
    user_id: int
    username: str
    status: str
    needs_reauth: bool
    providers: list[ProviderSync]


@dataclass(frozen=True, slots=True)
class ReconcileGap:
    """The latest reconciliation of one account and provider, where it found a gap (items
    missing after it, items stored but no longer at Google) or failed (jobs.sync.reconcile)."""

    run_id: int
    account_id: int
    email: str
    provider: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    listed: int
    stored: int
    missing: int
    fetched: int
    extra: int
    # Missing items this run did not fetch (read-only, failed, or not reached yet).
    unfetched: int


@dataclass(frozen=True, slots=True)
class RawEventFigures:
    pending: int
    # Pending longer than stale_after_s (pending_sweep_after_s) ...
    stale_pending: int
    # ... of which no active sync or normalize job covers (the sweep's backlog).
    stale_uncovered: int
    stale_after_s: float
    failed: int


@dataclass(frozen=True, slots=True)
class FailureRate:
    window_s: float
    finished: int
    failed: int
    rate: float


@dataclass(frozen=True, slots=True)
class QuotaFigures:
    """Quota spent by every account together (the project's limit), per API."""

    api: str
    last_minute: float
    today: float


@dataclass(frozen=True, slots=True)
class Problem:
    """One unhealthy condition: which check, and the reason in words."""

    check: str
    reason: str


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    now: datetime
    window_hours: int
    since: datetime
    kinds: list[KindRow]
    throughput: list[HourBucket]
    failure_groups: list[FailureGroup]
    failed_in_window: int
    failed_total: int
    queue: list[QueueRow]
    waiting_total: int
    due_total: int
    oldest_due_kind: str | None
    oldest_due_at: datetime | None
    oldest_due_age_s: float | None
    running: list[RunningJob]
    running_total: int
    raw_events: RawEventFigures
    accounts: list[AccountRow]
    needs_reauth: list[str]
    quota: list[QuotaFigures]
    failure_rate: FailureRate
    # The latest reconciliation per account and provider over RECONCILE_SHOWN_DAYS (at least two
    # reconcile intervals), where it found a gap or failed; none when everything is complete.
    reconcile_gaps: list[ReconcileGap] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, camelCase keys (as the metrics lines), times in ISO 8601."""
        data = _jsonable(self)
        data["healthy"] = self.healthy
        return data


def pipeline_status(
    *, now: datetime | None = None, config: PipelineConfig | None = None
) -> PipelineStatus:
    """Every figure of the pipeline page, measured at `now` (default: the database's clock)."""
    config = config or get_config()
    now = now or _db_now()
    since = now - timedelta(hours=WINDOW_HOURS)
    kinds = _kind_rows(since)
    queue = _queue(now)
    due = [row for row in queue if row.oldest_due_at is not None]
    oldest = min(due, key=lambda row: row.oldest_due_at or now, default=None)
    groups, failed_in_window = _failure_groups(since, now)
    running = _running(now)
    accounts = _accounts(now)
    status = PipelineStatus(
        now=now,
        window_hours=WINDOW_HOURS,
        since=since,
        kinds=kinds,
        throughput=_throughput(now),
        failure_groups=groups,
        failed_in_window=failed_in_window,
        failed_total=Job.objects.filter(status=JobStatus.FAILED).count(),
        queue=queue,
        waiting_total=sum(row.queued + row.retrying for row in queue),
        due_total=sum(row.due for row in queue),
        oldest_due_kind=oldest.kind if oldest else None,
        oldest_due_at=oldest.oldest_due_at if oldest else None,
        oldest_due_age_s=oldest.oldest_due_age_s if oldest else None,
        running=running,
        running_total=sum(row.running for row in queue),
        raw_events=_raw_events(now, config),
        accounts=accounts,
        needs_reauth=[a.email for a in accounts if a.needs_reauth],
        quota=_project_quota(now),
        failure_rate=_failure_rate(now, config.health_failure_rate_window_s),
        reconcile_gaps=_reconcile_gaps(now, config),
    )
    return replace(status, problems=health_problems(status=status, config=config))


def health_problems(*, status: PipelineStatus, config: PipelineConfig) -> list[Problem]:
    """What is wrong by the configured health thresholds (jobs.config, "Health thresholds")."""
    problems = []
    age = status.oldest_due_age_s
    if age is not None and age > config.health_max_due_job_age_s:
        problems.append(
            Problem(
                "oldest_due_job",
                f"the oldest due job ({status.oldest_due_kind}) has waited {age:.0f} s for a "
                f"worker (limit {config.health_max_due_job_age_s:g} s): are the workers running?",
            )
        )
    rate = status.failure_rate
    if rate.finished >= config.health_failure_rate_min_jobs and (
        rate.rate > config.health_max_failure_rate
    ):
        problems.append(
            Problem(
                "failure_rate",
                f"{rate.failed} of {rate.finished} jobs finished in the last {rate.window_s:g} s "
                f"failed ({rate.rate:.0%}, limit {config.health_max_failure_rate:.0%})",
            )
        )
    if len(status.needs_reauth) > config.health_max_reauth_accounts:
        problems.append(
            Problem(
                "needs_reauth",
                f"{len(status.needs_reauth)} Google account(s) need their user to reconnect "
                f"them ({', '.join(status.needs_reauth)}; limit "
                f"{config.health_max_reauth_accounts})",
            )
        )
    raw = status.raw_events
    if raw.stale_uncovered > config.health_max_stale_pending_raw_events:
        problems.append(
            Problem(
                "stale_pending_raw_events",
                f"{raw.stale_uncovered} raw event(s) have been pending for more than "
                f"{raw.stale_after_s:g} s with no job to normalize them (limit "
                f"{config.health_max_stale_pending_raw_events}): is the pending sweep "
                "scheduled?",
            )
        )
    return problems


def pipeline_kinds(seen: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Kinds in stage order (the registered stages of jobs.pipeline.STAGES, by their depth in
    the graph: syncs and backfills, normalization, contacts, ...), then every other kind that
    has figures.

    A stage whose app is installed later (embed, generate_insights) appears by itself.
    """
    followers = {kind for following in STAGES.values() for kind in following}
    depth = {kind: 0 for kind in STAGES if kind not in followers}
    frontier = list(depth)
    while frontier:
        kind = frontier.pop(0)
        for following in STAGES.get(kind, ()):
            if following not in depth:
                depth[following] = depth[kind] + 1
                frontier.append(following)
    order = list(depth)
    staged = sorted(
        (kind for kind in depth if kind in REGISTRY), key=lambda k: (depth[k], order.index(k))
    )
    return [*staged, *sorted(set(seen) - set(staged))]


# --- queries ---------------------------------------------------------------------------------


def _db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def _rows(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _kind_rows(since: datetime) -> list[KindRow]:
    """Serves from job_created_idx (created_at INCLUDE kind, status): index-only."""
    counts: dict[str, dict[str, int]] = {}
    for kind, status, count in _rows(
        f"SELECT kind, status, count(*) FROM {_JOB} WHERE created_at >= %(since)s "
        "GROUP BY kind, status",
        {"since": since},
    ):
        counts.setdefault(kind, {})[status] = count
    rows = []
    for kind in pipeline_kinds(set(counts)):
        by_status = {status: counts.get(kind, {}).get(status, 0) for status in JobStatus.values}
        rows.append(KindRow(kind=kind, by_status=by_status, total=sum(by_status.values())))
    return rows


def hour_starts(now: datetime) -> list[datetime]:
    """The starts of the window's hours, oldest first; the last is the current hour."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=h) for h in range(WINDOW_HOURS - 1, -1, -1)]


def _throughput(now: datetime) -> list[HourBucket]:
    """Serves from job_finished_idx (finished_at INCLUDE kind, status): index-only."""
    starts = hour_starts(now)
    found: dict[datetime, dict[str, int]] = {}
    for hour, status, count in _rows(
        f"SELECT date_trunc('hour', finished_at AT TIME ZONE 'UTC'), status, count(*) "
        f"FROM {_JOB} WHERE finished_at >= %(start)s AND finished_at <= %(now)s "
        "GROUP BY 1, 2",
        {"start": starts[0], "now": now},
    ):
        found.setdefault(hour.replace(tzinfo=UTC), {})[status] = count
    return [
        HourBucket(
            start=start,
            succeeded=found.get(start, {}).get(JobStatus.SUCCEEDED, 0),
            failed=found.get(start, {}).get(JobStatus.FAILED, 0),
            cancelled=found.get(start, {}).get(JobStatus.CANCELLED, 0),
        )
        for start in starts
    ]


def _failure_groups(since: datetime, now: datetime) -> tuple[list[FailureGroup], int]:
    """Failed jobs finished in the window, grouped by kind and error pattern, largest first.

    Serves from job_finished_idx (the window's finished jobs), reading the failed rows'
    last_error from the table.
    """
    grouped = _rows(
        f"""
        SELECT kind, pattern, count(*), max(finished_at),
               (array_agg(id ORDER BY finished_at DESC, id DESC))[1]
          FROM (SELECT id, kind, finished_at, {error_pattern_sql()} AS pattern
                  FROM {_JOB}
                 WHERE finished_at >= %(since)s AND finished_at <= %(now)s
                       AND status = %(failed)s) AS failed
         GROUP BY kind, pattern
         ORDER BY count(*) DESC, max(finished_at) DESC
        """,
        {"since": since, "now": now, "failed": JobStatus.FAILED},
    )
    shown = grouped[:FAILURE_GROUPS_SHOWN]
    errors = dict(
        Job.objects.filter(pk__in=[row[4] for row in shown]).values_list("pk", "last_error")
    )
    groups = [
        FailureGroup(
            kind=kind,
            error_class=error_class(pattern or ""),
            pattern=pattern or "",
            count=count,
            latest_job_id=latest_id,
            latest_at=latest_at,
            latest_error=errors.get(latest_id, ""),
        )
        for kind, pattern, count, latest_at, latest_id in shown
    ]
    return groups, sum(row[2] for row in grouped)


def failure_group_job_ids(*, kind: str, pattern: str, since: datetime) -> list[int]:
    """Ids of the failed jobs of one group (the "retry this group" action), newest first."""
    return [
        row[0]
        for row in _rows(
            f"SELECT id FROM {_JOB} WHERE finished_at >= %(since)s AND status = %(failed)s "
            f"AND kind = %(kind)s AND {error_pattern_sql()} = %(pattern)s ORDER BY id DESC",
            {"since": since, "failed": JobStatus.FAILED, "kind": kind, "pattern": pattern},
        )
    ]


def _queue(now: datetime) -> list[QueueRow]:
    """Waiting jobs serve from job_due_idx (waiting jobs only), running ones from
    job_status_idx: both small sets of rows."""
    found: dict[str, dict[str, Any]] = {}
    running = dict(
        Job.objects.filter(status=JobStatus.RUNNING)
        .values("kind")
        .annotate(n=Count("pk"))
        .values_list("kind", "n")
    )
    for kind, status, count, due, oldest in _rows(
        f"SELECT kind, status, count(*), count(*) FILTER (WHERE run_after <= %(now)s), "
        f"min(run_after) FILTER (WHERE run_after <= %(now)s) FROM {_JOB} "
        "WHERE status IN (%(queued)s, %(retrying)s) GROUP BY kind, status",
        {"now": now, "queued": JobStatus.QUEUED, "retrying": JobStatus.RETRYING},
    ):
        row = found.setdefault(kind, {"queued": 0, "retrying": 0, "due": 0, "oldest": None})
        row[status] = count
        row["due"] += due
        if oldest is not None and (row["oldest"] is None or oldest < row["oldest"]):
            row["oldest"] = oldest
    return [
        QueueRow(
            kind=kind,
            queued=found.get(kind, {}).get("queued", 0),
            retrying=found.get(kind, {}).get("retrying", 0),
            due=found.get(kind, {}).get("due", 0),
            oldest_due_at=found.get(kind, {}).get("oldest"),
            oldest_due_age_s=_age(now, found.get(kind, {}).get("oldest")),
            running=running.get(kind, 0),
        )
        for kind in pipeline_kinds(set(found) | set(running))
    ]


def _running(now: datetime) -> list[RunningJob]:
    """The longest-running jobs first; serves from job_status_idx."""
    shown = (
        Job.objects.filter(status=JobStatus.RUNNING)
        .order_by("started_at", "id")
        .values(
            "id",
            "kind",
            "user_id",
            "locked_by",
            "started_at",
            "lease_expires_at",
            "cancel_requested",
        )[:RUNNING_SHOWN]
    )
    return [
        RunningJob(
            **row,
            lease_age_s=_age(now, row["started_at"]),
            lease_left_s=(
                (row["lease_expires_at"] - now).total_seconds() if row["lease_expires_at"] else None
            ),
        )
        for row in shown
    ]


def _failure_rate(now: datetime, window_s: float) -> FailureRate:
    """Serves from job_finished_idx: index-only."""
    ((failed, finished),) = _rows(
        f"SELECT count(*) FILTER (WHERE status = %(failed)s), count(*) FROM {_JOB} "
        "WHERE finished_at > %(start)s AND finished_at <= %(now)s "
        "AND status IN (%(failed)s, %(succeeded)s)",
        {
            "start": now - timedelta(seconds=window_s),
            "now": now,
            "failed": JobStatus.FAILED,
            "succeeded": JobStatus.SUCCEEDED,
        },
    )
    return FailureRate(
        window_s=window_s,
        finished=finished,
        failed=failed,
        rate=round(failed / finished, 4) if finished else 0.0,
    )


def _raw_events(now: datetime, config: PipelineConfig) -> RawEventFigures:
    """Each count through the work list (pending) or a partial index of raw events (failed)."""
    after = config.pending_sweep_after_s
    pending = PendingRawEvent.objects.all()
    stale = pending.filter(raw_event__updated_at__lt=now - timedelta(seconds=after))
    # The users whose pending raw events an active job covers, per provider (as the sweep
    # decides): read from the few active jobs, not joined row by row.
    uncovered = 0
    for provider in Provider.values:
        covered = set(
            Job.objects.filter(
                status__in=ACTIVE_STATUSES, kind__in=covering_kinds(provider)
            ).values_list("user_id", flat=True)
        )
        uncovered += stale.filter(provider=provider).exclude(user_id__in=sorted(covered)).count()
    return RawEventFigures(
        pending=pending.count(),
        stale_pending=stale.count(),
        stale_uncovered=uncovered,
        stale_after_s=after,
        failed=RawEvent.objects.failed().count(),
    )


def _project_quota(now: datetime) -> list[QuotaFigures]:
    """Per API, the project scope's spend (every account's calls count against it)."""
    keys = {api: _scope_key("", api, ":project") for api in Provider.values}
    minute = dict(
        QuotaUsage.objects.filter(
            scope__in=keys.values(),
            spent_at__gt=now - timedelta(seconds=QUOTA_MINUTE_S),
            spent_at__lte=now,
        )
        .values("scope")
        .annotate(units=Sum("units"))
        .values_list("scope", "units")
    )
    today = dict(
        QuotaDaily.objects.filter(scope__in=keys.values(), day=_utc_day(now)).values_list(
            "scope", "units"
        )
    )
    return [
        QuotaFigures(
            api=api,
            last_minute=float(minute.get(key, 0.0)),
            today=float(today.get(key, 0.0)),
        )
        for api, key in keys.items()
    ]


def _reconcile_gaps(now: datetime, config: PipelineConfig) -> list[ReconcileGap]:
    """The latest run per account and provider started over the shown days (served by
    reconcile_run_started_idx, then a sort of those runs), kept where it found a gap or failed."""
    days = max(RECONCILE_SHOWN_DAYS, 2 * config.reconcile_interval_hours / 24)
    latest = (
        ReconcileRun.objects.filter(started_at__gte=now - timedelta(days=days))
        .exclude(status=ReconcileStatus.SKIPPED)
        .order_by("account_id", "provider", "-id")
        .distinct("account_id", "provider")
        .values(
            "id",
            "account_id",
            "account__email",
            "provider",
            "status",
            "started_at",
            "finished_at",
            "provider_count",
            "stored_count",
            "missing_count",
            "fetched_count",
            "extra_count",
        )
    )
    gaps = []
    for run in latest:
        unfetched = max(run["missing_count"] - run["fetched_count"], 0)
        if not (unfetched or run["extra_count"] or run["status"] == ReconcileStatus.FAILED):
            continue
        gaps.append(
            ReconcileGap(
                run_id=run["id"],
                account_id=run["account_id"],
                email=run["account__email"],
                provider=run["provider"],
                status=run["status"],
                started_at=run["started_at"],
                finished_at=run["finished_at"],
                listed=run["provider_count"],
                stored=run["stored_count"],
                missing=run["missing_count"],
                fetched=run["fetched_count"],
                extra=run["extra_count"],
                unfetched=unfetched,
            )
        )
    return sorted(gaps, key=lambda gap: (gap.email, gap.provider))


def _is_backfill(resource_id: str) -> bool:
    return resource_id == "backfill" or resource_id.startswith("backfill:")


def _scope_key(mailbox: str, api: str, kind: str) -> str:
    """The pacer's key of a scope (":user:" a mailbox's, ":project" everyone's) for one API."""
    return next(scope.key for scope in pacer.scopes(mailbox, api) if kind in scope.key)


def _accounts(now: datetime) -> list[AccountRow]:
    """Every Google account with its sync states and quota: four queries for any number."""
    username_field = get_user_model().USERNAME_FIELD
    accounts = list(
        GoogleAccount.objects.order_by("email", "id").values(
            "id", "email", "user_id", "status", f"user__{username_field}"
        )
    )
    states: dict[tuple[int, str], list[Any]] = {}
    for state in SyncState.objects.filter(account_id__in=[a["id"] for a in accounts]).values(
        "account_id",
        "provider",
        "resource_id",
        "cursor",
        "last_synced_at",
        "last_full_sync_at",
        "backfill_done_at",
        "pass_listed",
        "pass_fetched",
        "pass_query",
        "pass_cursor",
        pending=Func(F("pending_ids"), function="jsonb_array_length", output_field=IntegerField()),
        failed=_JsonKeys(F("failures")),
    ):
        states.setdefault((state["account_id"], state["provider"]), []).append(state)
    scopes = {
        (a["id"], provider): _scope_key(a["email"], provider, ":user:")
        for a in accounts
        for provider in Provider.values
    }
    minute = dict(
        QuotaUsage.objects.filter(
            scope__in=set(scopes.values()),
            spent_at__gt=now - timedelta(seconds=QUOTA_MINUTE_S),
            spent_at__lte=now,
        )
        .values("scope")
        .annotate(units=Sum("units"))
        .values_list("scope", "units")
    )
    push_rows: dict[int, list[PushChannel]] = {a["id"]: [] for a in accounts}
    for row in PushChannel.objects.filter(account_id__in=list(push_rows)):
        push_rows[row.account_id].append(row)
    config = get_config()
    push = {pk: push_health_of_rows(rows, config=config, now=now) for pk, rows in push_rows.items()}
    today = dict(
        QuotaDaily.objects.filter(scope__in=set(scopes.values()), day=_utc_day(now)).values_list(
            "scope", "units"
        )
    )
    rows = []
    for account in accounts:
        providers = []
        for provider in Provider.values:
            found = states.get((account["id"], provider), [])
            main = [s for s in found if not _is_backfill(s["resource_id"])]
            cursors = [s["last_synced_at"] for s in main if s["cursor"] and s["last_synced_at"]]
            scope = scopes[(account["id"], provider)]
            providers.append(
                ProviderSync(
                    provider=provider,
                    states=len(found),
                    last_sync_at=max(
                        (s["last_synced_at"] for s in main if s["last_synced_at"]), default=None
                    ),
                    last_full_sync_at=max(
                        (s["last_full_sync_at"] for s in main if s["last_full_sync_at"]),
                        default=None,
                    ),
                    cursor_age_s=_age(now, min(cursors)) if cursors else None,
                    pending_ids=sum(s["pending"] or 0 for s in found),
                    pass_open=any(
                        s["pass_query"] or s["pending"] or s["pass_cursor"] for s in found
                    ),
                    pass_listed=sum(s["pass_listed"] for s in found),
                    pass_fetched=sum(s["pass_fetched"] for s in found),
                    failed_items=sum(s["failed"] or 0 for s in found),
                    backfill_done_at=max(
                        (s["backfill_done_at"] for s in main if s["backfill_done_at"]),
                        default=None,
                    ),
                    quota_last_minute=float(minute.get(scope, 0.0)),
                    quota_today=float(today.get(scope, 0.0)),
                    push=str(push[account["id"]][provider]),
                )
            )
        rows.append(
            AccountRow(
                id=account["id"],
                email=account["email"],
                user_id=account["user_id"],
                username=str(account[f"user__{username_field}"]),
                status=account["status"],
                needs_reauth=account["status"] == GoogleAccountStatus.NEEDS_REAUTH,
                providers=providers,
            )
        )
    return rows


class _JsonKeys(Func):
    """How many keys a JSON object has (SyncState.failures: the failed items)."""

    template = "(SELECT count(*) FROM jsonb_object_keys(%(expressions)s))"
    output_field = IntegerField()


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _age(now: datetime, then: datetime | None) -> float | None:
    return round((now - then).total_seconds(), 3) if then is not None else None


# --- serialisation ---------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value
