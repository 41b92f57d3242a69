"""The admin's pipeline page on 1,000,000 jobs and 200 accounts vs the job changelist, same run.

Usage: DEBUG=1 python bench/admin_pipeline.py [--jobs 1000000] [--accounts 200]

Rows are inserted with generate_series (tests/jobs/million.py) into a throwaway database
(Django's test-database machinery creates, migrates and drops it). Timed through the Django
test client as a superuser (query, rendering, middleware), best of 5 after a warm-up: the
pipeline page, `pipeline_status --json`'s selector, a /metrics scrape after the first fold, and
the job changelist's first page for scale. Then the plan of every job-table query of the page
(the node types on jobs_job and its indexes). The last line is JSON.
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
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        print(json.dumps(run(args.jobs, args.accounts)))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(n: int, accounts: int) -> dict[str, object]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from jobs.metrics import run_totals_fold
    from jobs.models import Job
    from jobs.status import pipeline_status
    from tests.jobs.million import load_accounts, load_jobs

    users = get_user_model().objects
    admin = users.create_superuser("bench-admin", "admin@example.com", "pw")
    owners = [users.create_user(f"bench-owner-{i}").pk for i in range(20)]
    started = time.perf_counter()
    load_jobs(owners=owners, jobs=n)
    load_accounts(owners=owners, accounts=accounts)
    print(f"inserted {n} jobs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    started = time.perf_counter()
    run_totals_fold()  # the first fold reads the whole history once
    first_fold_s = time.perf_counter() - started
    client = Client()
    client.force_login(admin)
    page = "/admin/jobs/job/pipeline/"
    timings = {
        "pipeline_page_ms": best_of(lambda: client.get(page)),
        "pipeline_status_selector_ms": best_of(pipeline_status),
        "metrics_scrape_ms": best_of(lambda: client.get("/metrics")),
        "job_changelist_ms": best_of(lambda: client.get("/admin/jobs/job/")),
    }
    with CaptureQueriesContext(connection) as captured:
        client.get(page)
    plans = {}
    table = Job._meta.db_table
    for query in captured.captured_queries:
        if table in query["sql"]:
            plans[" ".join(query["sql"].split())[:90]] = job_scans(query["sql"], table)
    for sql, scans in plans.items():
        print(f"  {', '.join(scans):<60} {sql}", file=sys.stderr)
    for name, ms in timings.items():
        print(f"{name:>28}: {ms:8.1f} ms", file=sys.stderr)
    return {
        "jobs": n,
        "accounts": accounts,
        **timings,
        "page_queries": len(captured.captured_queries),
        "page_vs_changelist": round(timings["pipeline_page_ms"] / timings["job_changelist_ms"], 2),
        "first_fold_s": round(first_fold_s, 1),
        "seq_scans_on_jobs": sum(
            1 for scans in plans.values() for scan in scans if scan.startswith("Seq Scan")
        ),
    }


def job_scans(sql: str, table: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        result = cursor.fetchone()[0]
    plan = (json.loads(result) if isinstance(result, str) else result)[0]["Plan"]
    found: list[str] = []
    stack: list[dict[str, Any]] = [plan]
    while stack:
        node = stack.pop()
        stack += node.get("Plans", [])
        if node.get("Relation Name") == table or (node.get("Index Name") or "").startswith("job"):
            found.append(f"{node['Node Type']} on {node.get('Index Name', table)}")
    return found


def best_of(fn: Callable[[], Any], times: int = 5) -> float:
    fn()  # warm
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        response = fn()
        if hasattr(response, "status_code") and response.status_code != 200:
            raise SystemExit(f"answered {response.status_code}")
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


if __name__ == "__main__":
    main()
