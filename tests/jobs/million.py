"""A job table at production scale, loaded fast with generate_series: for the plan checks of
the pipeline page (tests/jobs/test_status_plans.py) and its benchmark (bench/admin_pipeline.py).

Jobs spread over the last `days` days, one kind of nine each, mostly succeeded; one in fifty
failed with an error that varies by number (so failure groups have work to do); a few hundred
waiting, due, retrying and running; `accounts` Google accounts with a Gmail and a Calendar sync
state each.
"""

from __future__ import annotations

from django.db import connection

from jobs.models import GoogleAccount, Job, SyncState

KINDS = (
    "gmail_sync",
    "calendar_sync",
    "gmail_backfill",
    "calendar_backfill",
    "normalize_gmail",
    "normalize_calendar",
    "extract_contacts",
    "write_timeline",
    "update_rollups",
)


def load_jobs(*, owners: list[int], jobs: int, days: int = 60) -> None:
    """Insert `jobs` rows in one statement, then ANALYZE (the planner must know the sizes)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Job._meta.db_table}
                (user_id, kind, payload, status, attempts, max_attempts, priority, run_after,
                 locked_by, cancel_requested, last_error, errors, metrics, batch_id,
                 created_at, started_at, finished_at, lease_expires_at, updated_at)
            SELECT (%(owners)s::bigint[])[1 + i %% cardinality(%(owners)s::bigint[])],
                   (%(kinds)s::text[])[1 + i %% cardinality(%(kinds)s::text[])],
                   '{{}}', s.status, 1, 5, 0,
                   CASE WHEN s.status IN ('queued', 'retrying')
                        THEN now() - make_interval(secs => (i %% 600) - 300)
                        ELSE t.at END,
                   CASE WHEN s.status = 'running' THEN 'bench:1' ELSE '' END, false,
                   CASE WHEN s.status = 'failed'
                        THEN 'PermanentError: HTTP ' || (500 + i %% 4) || ' for message '
                             || to_hex(i::bigint * 7919) || ' after ' || (i %% 30) || ' s'
                        ELSE '' END,
                   '[]', jsonb_build_object('itemsFetched', i %% 500, 'itemsInserted', i %% 50),
                   gen_random_uuid(), t.at,
                   CASE WHEN s.status IN ('queued') THEN NULL ELSE t.at END,
                   CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled')
                        THEN t.at + make_interval(secs => i %% 90) END,
                   CASE WHEN s.status = 'running' THEN now() + interval '10 minutes' END,
                   t.at
              FROM generate_series(1, %(n)s) AS i,
                   LATERAL (SELECT now() - make_interval(secs => (%(n)s - i)::float8
                                   * %(span)s / %(n)s) AS at) AS t,
                   LATERAL (SELECT CASE WHEN i %% 50 = 0 THEN 'failed'
                                        WHEN i %% 997 = 0 THEN 'cancelled'
                                        WHEN i > %(n)s - 300 AND i %% 3 = 0 THEN 'queued'
                                        WHEN i > %(n)s - 300 AND i %% 7 = 0 THEN 'retrying'
                                        WHEN i > %(n)s - 300 AND i %% 11 = 0 THEN 'running'
                                        ELSE 'succeeded' END AS status) AS s
            """,
            {"owners": owners, "kinds": list(KINDS), "n": jobs, "span": days * 86_400},
        )
        cursor.execute(f"ANALYZE {Job._meta.db_table}")


def load_accounts(*, owners: list[int], accounts: int) -> None:
    """`accounts` Google accounts spread over the owners, each with two sync states."""
    made = GoogleAccount.objects.bulk_create(
        GoogleAccount(user_id=owners[i % len(owners)], email=f"mailbox{i}@bench.example")
        for i in range(accounts)
    )
    SyncState.objects.bulk_create(
        SyncState(
            user_id=account.user_id,
            account=account,
            provider=provider,
            resource_id="" if provider == "gmail" else account.email,
            cursor="1234",
            pending_ids=["a", "b"],
            pass_listed=2,
        )
        for account in made
        for provider in ("gmail", "calendar")
    )
