"""The job admin's changelist on 1,000,000 jobs vs a bare SELECT of the same page, same run.

Usage: DEBUG=1 python bench/admin_list.py [--jobs 1000000]

Rows are inserted with one INSERT ... SELECT FROM generate_series into a throwaway database
(Django's test-database machinery creates, migrates and drops it). Each page is fetched through
the Django test client as a superuser (the whole admin: query, rendering, middleware) and
compared with the bare ORM query for the same 50 rows. The last line is JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

# page -> (admin query string, the bare ORM filter for the same rows)
PAGES = {
    "all": ("", {}),
    "status=failed": ("?status__exact=failed", {"status": "failed"}),
    "kind=gmail_sync": ("?kind=gmail_sync", {"kind": "gmail_sync"}),
    "search batch id": ("?q={batch}", {"batch_id": "{batch}"}),
    "search username": ("?q=bench-admin-7", {"user__username": "bench-admin-7"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        print(json.dumps(run(args.jobs)))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(n: int) -> dict[str, object]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from jobs.models import Job

    users = get_user_model().objects
    admin = users.create_superuser("bench-admin", "admin@example.com", "pw")
    owners = [users.create_user(f"bench-admin-{i}").pk for i in range(10)]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Job._meta.db_table}
                (user_id, kind, payload, status, attempts, max_attempts, run_after,
                 locked_by, cancel_requested, last_error, errors, metrics, batch_id,
                 created_at, started_at, finished_at, updated_at)
            SELECT (%s::bigint[])[1 + i %% 10],
                   (ARRAY['gmail_sync','calendar_sync','normalize_gmail','normalize_calendar'])
                       [1 + i %% 4],
                   '{{}}', CASE WHEN i %% 50 = 0 THEN 'failed' ELSE 'succeeded' END,
                   1, 5, now(), '', false,
                   CASE WHEN i %% 50 = 0 THEN 'TransientError: 503' ELSE '' END, '[]',
                   jsonb_build_object('itemsInserted', i %% 500), gen_random_uuid(),
                   now() - make_interval(secs => %s - i), now(), now(), now()
              FROM generate_series(1, %s) AS i
            """,
            [owners, n, n],
        )
        cursor.execute(f"ANALYZE {Job._meta.db_table}")
    print(f"inserted {n} jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    batch = Job.objects.order_by("-id").values_list("batch_id", flat=True)[123]
    client = Client()
    client.force_login(admin)
    pages = {}
    for name, (query, lookup) in PAGES.items():
        url = "/admin/jobs/job/" + query.format(batch=batch)
        bare = Job.objects.filter(
            **{k: (batch if v == "{batch}" else v) for k, v in lookup.items()}
        ).select_related("user")[:50]
        client.get(url)  # warm
        admin_s = best_of(lambda url=url: client.get(url), 5)
        bare_s = best_of(lambda bare=bare: list(bare.all()), 5)
        pages[name] = {
            "admin_ms": round(admin_s * 1000, 1),
            "bare_select_ms": round(bare_s * 1000, 2),
        }
        print(f"{name:>16}: admin {admin_s * 1000:7.1f} ms", file=sys.stderr)
    worst = max(p["admin_ms"] for p in pages.values())
    return {"jobs": n, "pages": pages, "worst_admin_ms": worst}


def best_of(fn: object, times: int) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        response = fn()  # type: ignore[operator]
        if hasattr(response, "status_code") and response.status_code != 200:
            raise SystemExit(f"admin answered {response.status_code}")
        best = min(best, time.perf_counter() - started)
    return best


if __name__ == "__main__":
    main()
