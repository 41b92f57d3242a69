"""Two runs of one user's insights at once (two batches' generate_insights on two workers): each
insight is stored once, inserted by one run only, and neither run fails."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from insights.models import Insight
from insights.services import InsightsReport, insights_generate
from tests.insights.helpers import DAY, NOW, exchange, mail, person, refresh


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_store_each_insight_once(user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    exchange(user, jane, days_ago=[100, 90, 80, 70, 60, 50])
    mail(user, jane, at=NOW - 5 * DAY, thread="th-1", body="Can you send the invoice?")
    refresh(user, jane)
    reports = {"a": InsightsReport(), "b": InsightsReport()}
    both_in_a_transaction = threading.Barrier(2, timeout=10)
    errors = []

    def worker(name: str) -> None:
        waited = []

        def fence() -> None:
            # inside each run's first write transaction, before its lock: both at once
            if not waited:
                waited.append(True)
                both_in_a_transaction.wait()

        try:
            insights_generate(user_id=user.pk, now=NOW, fence=fence, report=reports[name])
        except Exception as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(name,)) for name in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    rows = Insight.objects.filter(user=user)
    kinds = sorted(rows.values_list("kind", flat=True))
    assert kinds == ["awaiting_reply", "relationship_strength", "weekly_digest"]
    assert reports["a"].inserted + reports["b"].inserted == len(kinds)
    assert reports["a"].unchanged + reports["b"].unchanged == len(kinds)
