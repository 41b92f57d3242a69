"""An operator's day in the admin, in a real Chromium: the pipeline page, a failure group
retried until its jobs succeed, a running job cancelled from its page, a contact with its
identities, timeline and rollups, a merge suggestion accepted and undone."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from contacts.models import Contact, ContactMerge, MergeSuggestion
from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus
from jobs.runner import run_due_jobs, run_job
from tests.browser.conftest import sign_in
from tests.contacts.factories import OWN, account_for, gmail, ingest
from tests.jobs.pipeline_data import build, failed_flaky

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    """Jobs run in the test's process (run_due_jobs), never handed to a broker."""
    pipeline_config(handoff="none", cancel_check_interval_s=0.1)


def test_an_operator_reads_the_pipeline_page_and_follows_a_failure_group(
    watched, live_server, operator, user, other_user
):
    built = build(user, other_user)
    sign_in(watched, live_server)
    page = watched.page
    page.click("#content-main a[href='/admin/jobs/job/']")
    page.click("a.viewlink:has-text('Pipeline')")
    page.wait_for_selector("#failures")
    assert page.locator("#problems").inner_text().startswith("Unhealthy")
    assert page.locator("svg[aria-label='jobs per kind and status'] rect").count() == 5
    watched.shot("pipeline")
    group = page.locator("tr.failure-group", has_text="upstream answered <n> for item <n>")
    assert group.locator("[data-figure$='.count']").inner_text() == "4"
    group.locator("[data-figure$='.count']").click()
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == len(built.upstream_failures) == 4
    assert page.locator("#result_list").inner_text().count("flaky") == 4
    watched.shot("failure-group-jobs")
    rows.first.locator("th a").click()
    page.wait_for_selector(".job-retry")
    watched.shot("failed-job")
    page.goto(f"{live_server.url}/admin/jobs/googleaccount/{built.active.pk}/change/")
    assert "ada@pipeline.example" in page.content()
    watched.shot("google-account")
    page.goto(f"{live_server.url}/admin/jobs/rawevent/?status__exact=failed")
    assert page.locator("#result_list tbody tr").count() == 2
    watched.shot("failed-raw-events")


def test_retrying_a_failure_group_makes_its_jobs_succeed(watched, live_server, operator, user):
    jobs = failed_flaky(user, items=range(3), until_s=1.0)
    time.sleep(1.1)  # the upstream outage is over
    sign_in(watched, live_server)
    page = watched.page
    page.goto(f"{live_server.url}/admin/jobs/job/pipeline/")
    watched.shot("before-retry")
    page.locator("tr.failure-group", has_text="flaky").locator("button.retry-group").click()
    page.wait_for_selector("text=3 of 3 failed flaky job(s) queued for retry.")
    report = run_due_jobs(until_empty=True)
    assert report.outcomes == {JobStatus.SUCCEEDED: 3}
    page.reload()
    page.wait_for_selector("text=No job failed in the last 24 hours.")
    watched.shot("after-retry")
    assert set(
        Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
    ) == {JobStatus.SUCCEEDED}


def test_cancelling_a_running_job_from_its_page(watched, live_server, operator, user):
    job = enqueue("record", user=user, payload={"sleep_s": 60})
    outcome: list[str] = []

    def work() -> None:
        try:
            outcome.append(run_job(job.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = time.monotonic() + 15
    while Job.objects.get(pk=job.pk).status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    sign_in(watched, live_server)
    page = watched.page
    page.goto(f"{live_server.url}/admin/jobs/job/{job.pk}/change/")
    watched.shot("running-job")
    page.click("button.job-cancel")
    page.wait_for_selector("text=asked to stop at its next checkpoint")
    worker.join(timeout=20)
    assert outcome == [JobStatus.CANCELLED]
    page.reload()
    assert "cancelled" in page.locator("div.field-status").inner_text()
    assert page.locator("button.job-retry").count() == 1  # a cancelled job may be retried
    watched.shot("cancelled-job")


def people(user) -> None:
    """Mail with Grace Hopper (two addresses, two spellings of her name), through the real
    stages: normalization, extract_contacts, write_timeline, update_rollups."""
    account_for(user)
    mails = [
        gmail(frm="Grace Hopper <grace@navy.example>", to=[OWN], subject=f"Compilers {i}")
        for i in range(3)
    ]
    mails += [gmail(frm=OWN, to=["grace@navy.example"], subject="Re: Compilers", labels=["SENT"])]
    mails += [gmail(frm="Grace M. Hopper <g.hopper@navy.example>", to=[OWN], subject="COBOL")]
    batch = ingest(user, mails=mails)
    enqueue("extract_contacts", user=user, batch_id=batch, dedupe_key=f"browser:{batch}")
    run_due_jobs(until_empty=True)


def test_a_contact_shows_its_identities_timeline_and_rollups(watched, live_server, operator, user):
    people(user)
    grace = Contact.objects.get(primary_email="grace@navy.example")
    sign_in(watched, live_server)
    page = watched.page
    page.goto(f"{live_server.url}/admin/contacts/contact/?q=grace")
    watched.shot("contacts")
    page.click(f"#result_list a[href*='/contact/{grace.pk}/change/']")
    page.wait_for_selector(".field-latest_timeline")
    text = page.content()
    assert "grace@navy.example" in text  # an identity
    assert "Received: Compilers 2" in page.locator(".field-latest_timeline").inner_text()
    assert page.locator(".field-interaction_count .readonly").inner_text() == "4"
    watched.shot("contact")


def test_accepting_a_merge_suggestion_and_undoing_it(watched, live_server, operator, user):
    people(user)
    suggestion = MergeSuggestion.objects.get()
    sign_in(watched, live_server)
    page = watched.page
    page.goto(f"{live_server.url}/admin/contacts/mergesuggestion/")
    watched.shot("suggestions")
    page.check(f"input[name=_selected_action][value='{suggestion.pk}']")
    page.select_option("select[name=action]", "accept")
    page.click("button[name=index]")
    page.wait_for_selector("text=Accepted 1 suggestion(s).")
    merged = Contact.objects.filter(merged_into__isnull=False).count()
    assert merged == 1
    watched.shot("accepted")
    merge = ContactMerge.objects.get()
    page.goto(f"{live_server.url}/admin/contacts/contactmerge/")
    page.check(f"input[name=_selected_action][value='{merge.pk}']")
    page.select_option("select[name=action]", "undo")
    page.click("button[name=index]")
    page.wait_for_selector("text=Undid 1 merge(s).")
    assert Contact.objects.filter(merged_into__isnull=False).count() == 0
    watched.shot("undone")
