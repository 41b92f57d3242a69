"""Search in the admin, in a real Chromium: an operator picks a user, types a query, reads the
fused results with their scores and snippet, and opens the interaction behind the best one.

The vectors come from the `openai` provider pointed at the local OpenAI-compatible stand-in
(real HTTP, bag-of-words vectors), so the test needs no model weights; the embed stage that
writes them is the real one, run by the job engine.
"""

from __future__ import annotations

import uuid

import pytest

from jobs.enqueue import enqueue
from jobs.runner import run_job
from search.indexes import forget_checked_indexes
from tests.browser.conftest import sign_in
from tests.search.mail import in_batch, mail

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stand_in_search(openai_server, settings, pipeline_config):
    settings.CRM_PIPELINE_SEARCH = {
        "provider": "openai",
        "openai_base_url": openai_server.base_url,
        "openai_model": "nomic-embed-text",
        "openai_dimensions": 64,
        "max_retries": 0,
    }
    pipeline_config(handoff="none")
    forget_checked_indexes()
    yield openai_server
    forget_checked_indexes()


def _embed(user, interactions) -> None:
    batch = in_batch(interactions)
    job = enqueue("embed", user=user, batch_id=batch, dedupe_key=f"embed:{uuid.uuid4()}")
    assert run_job(job.pk) == "succeeded"


def test_an_operator_searches_a_users_mail_and_opens_the_best_hit(
    watched, live_server, operator, user, other_user, stand_in_search
):
    ours = [
        mail(user, "Invoice 4411 overdue", "The March invoice is overdue, please pay it."),
        mail(user, "Lunch on Friday", "Shall we meet for lunch on Friday at noon?"),
        mail(user, "Roadmap review", "Notes from the quarterly roadmap review."),
    ]
    theirs = [mail(other_user, "Overdue invoice of Bob", "Bob's March invoice is overdue.")]
    _embed(user, ours)
    _embed(other_user, theirs)

    sign_in(watched, live_server)
    page = watched.page
    page.goto(f"{live_server.url}/admin/search/interactionsearch/")
    page.select_option("#id_user", label=user.username)
    page.fill("#id_query", "overdue March invoice")
    watched.shot("search-form")
    page.click("input[type=submit][value=Search]")
    page.wait_for_selector("#result_list")
    hits = page.locator("#result_list tr.search-hit")
    assert hits.count() >= 1
    assert "Invoice 4411 overdue" in hits.first.inner_text()
    # fused, vector and text scores are shown for the best hit; the snippet marks the matches
    assert hits.first.locator("mark").count() >= 1
    assert "Overdue invoice of Bob" not in page.locator("#result_list").inner_text()
    watched.shot("search-results")
    hits.first.locator("a").first.click()
    page.wait_for_url(f"**/admin/jobs/interaction/{ours[0].pk}/change/")
    assert "Invoice 4411 overdue" in page.content()
    watched.shot("interaction")
