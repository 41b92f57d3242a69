"""`manage.py search`, `manage.py embeddings` and the admin's search page."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from jobs.enqueue import enqueue
from jobs.models import Job
from jobs.runner import run_job
from tests.search.mail import in_batch, mail
from tests.timeline.people import person, take_part

pytestmark = pytest.mark.django_db


@pytest.fixture
def embedded(user, stand_in):
    mails = [
        mail(user, "Invoice INV-7", "The payment for March is still outstanding."),
        mail(user, "Lunch <Friday>", "Lunch at the harbour? <script>alert(1)</script>"),
    ]
    job = enqueue("embed", user=user, batch_id=in_batch(mails), dedupe_key=f"e:{uuid.uuid4()}")
    assert run_job(job.pk) == "succeeded"
    return mails


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_command_prints_one_line_per_result_with_scores_and_snippet(user, embedded):
    out = run("search", "ada", "outstanding invoice", "--limit", "1")
    lines = out.splitlines()
    assert "Invoice INV-7" in lines[0] and f"interaction {embedded[0].pk}" in lines[0]
    assert "fused 0.0328" in lines[0] and "vector 0." in lines[0] and "text 0." in lines[0]
    assert "«outstanding»" in lines[1]


def test_the_command_json_has_every_score(user, embedded):
    data = json.loads(run("search", "ada", "outstanding invoice", "--json", "--mode", "hybrid"))
    assert data["mode"] == "hybrid" and data["model"] == "nomic-embed-text"
    first = data["results"][0]
    assert first["interactionId"] == embedded[0].pk
    assert {"vectorScore", "textScore", "fusedScore", "snippet", "vectorRank", "textRank"} <= set(
        first
    )


def test_the_command_filters_by_contact_and_date(user, embedded):
    jane = person(user, "jane@acme.example")
    take_part(embedded[1], jane)
    data = json.loads(run("search", "ada", "invoice", "--contact", "JANE@acme.example", "--json"))
    assert [r["interactionId"] for r in data["results"]] == [embedded[1].pk]
    data = json.loads(run("search", "ada", "invoice", "--since", "2099-01-01", "--json"))
    assert data["results"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody", "x"), "user 'nobody' does not exist"),
        (("ada", "x", "--contact", "who@nowhere.example"), "no contact 'who@nowhere.example'"),
        (("ada", "x", "--contact", "not an address"), "neither a contact id nor an e-mail"),
    ],
)
def test_the_command_refuses_unknown_users_and_contacts_in_one_line(user, embedded, args, message):
    with pytest.raises(CommandError, match=message):
        run("search", *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ada", "x", "--since", "yesterday"), "not a date: 'yesterday'"),
        (("ada", "x", "--limit", "0"), "must be between 1 and 100"),
        (("ada", "x", "--mode", "fuzzy"), "invalid choice"),
    ],
)
def test_the_command_refuses_bad_arguments(user, embedded, args, message):
    with pytest.raises(CommandError, match=message):
        run("search", *args)


def test_embeddings_status_and_rebuild(user, embedded, other_user):
    status = json.loads(run("embeddings", "status", "ada", "--json"))
    assert status["documents"] == 2
    assert status["searching"] == {"model": "nomic-embed-text", "dims": 64, "complete": True}
    assert status["sets"][0]["vectors"] == 2 and status["sets"][0]["status"] == "complete"
    out = run("embeddings", "rebuild", "--all")
    assert "ada: embed (all) job" in out and "bob: embed (all) job" in out
    assert Job.objects.filter(kind="embed", payload__scope="all", status="queued").count() == 2
    assert "already queued" in run("embeddings", "rebuild", "ada")
    with pytest.raises(CommandError, match="needs a user"):
        run("embeddings", "status")


# --- admin ---------------------------------------------------------------------------------------

PAGE = "/admin/search/interactionsearch/"


def test_the_admin_page_searches_a_users_interactions(user, embedded, staff_client):
    page = staff_client.get(
        PAGE, {"user": user.pk, "query": "harbour lunch", "mode": "hybrid", "limit": 10}
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="search-hit"') == 2
    assert "Lunch &lt;Friday&gt;" in html and "<script>alert" not in html
    assert "<mark>harbour</mark>" in html


def test_the_admin_index_lists_the_search_page(staff_client):
    assert PAGE in staff_client.get("/admin/").content.decode()


def test_a_non_staff_user_is_sent_to_the_login_page(client, user, embedded):
    client.force_login(user)
    page = client.get(PAGE, {"user": user.pk, "query": "invoice"})
    assert page.status_code == 302 and "/admin/login/" in page["Location"]


def test_a_staff_member_who_is_not_superuser_searches_only_their_own_mail(
    client, user, other_user, embedded
):
    other_user.is_staff = True
    other_user.save()
    client.force_login(other_user)
    page = client.get(PAGE, {"user": user.pk, "query": "invoice", "mode": "text", "limit": 10})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="search-hit"' not in html
    assert "Select a valid choice" in html
