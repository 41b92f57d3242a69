"""At 1,000,000 jobs and 200 accounts the pipeline page reads the job table through indexes
only: every query it runs is EXPLAINed, and no plan holds a sequential scan of jobs_job."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.metrics import run_totals_fold
from jobs.models import Job
from tests.jobs.million import load_accounts, load_jobs

JOBS = 1_000_000
JOB_TABLE = Job._meta.db_table


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


def job_table_scans(sql: str) -> list[str]:
    """The plan's nodes that read jobs_job, as "Node Type on index" strings."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        result = cursor.fetchone()[0]
    plan_nodes = nodes((json.loads(result) if isinstance(result, str) else result)[0]["Plan"])
    return [
        f"{node['Node Type']} on {node.get('Index Name', JOB_TABLE)}"
        for node in plan_nodes
        if node.get("Relation Name") == JOB_TABLE
        or (node.get("Index Name") or "").startswith("job_")
    ]


@pytest.mark.slow
@pytest.mark.django_db
def test_the_pipeline_page_reads_a_million_jobs_through_indexes_only(
    staff_client, django_user_model
):
    owners = [django_user_model.objects.create_user(f"owner{i}").pk for i in range(20)]
    load_jobs(owners=owners, jobs=JOBS)
    load_accounts(owners=owners, accounts=200)
    with CaptureQueriesContext(connection) as page:
        response = staff_client.get(reverse("admin:jobs_job_pipeline"))
    assert response.status_code == 200
    assert b"PermanentError: HTTP &lt;n&gt; for message &lt;hex&gt;" in response.content
    checked = 0
    for query in page.captured_queries:
        sql = query["sql"]
        if JOB_TABLE not in sql:
            continue
        scans = job_table_scans(sql)
        assert scans, sql
        assert not any(scan.startswith("Seq Scan") for scan in scans), (sql, scans)
        print(f"{', '.join(scans)}  <-  {' '.join(sql.split())[:110]}")
        checked += 1
    assert checked >= 7
    # /metrics: after the first fold (which reads the whole history once), a scrape reads the
    # new runs only, through job_finished_idx
    run_totals_fold()
    with CaptureQueriesContext(connection) as scrape:
        assert staff_client.get("/metrics").status_code == 200
    for query in scrape.captured_queries:
        if JOB_TABLE in query["sql"]:
            scans = job_table_scans(query["sql"])
            assert not any(scan.startswith("Seq Scan") for scan in scans), (query["sql"], scans)
