"""Issue 12, item 7: a whole demo run (`manage.py demo`: the Google emulator, a real qcluster,
google-api-python-client over HTTP) leaves no OAuth token in what an operator can read: its
output, every process's log at DEBUG level (every logger), the job rows, django-q's task rows,
any row of the project's tables, and the admin pages (changelists and change pages of every
registered model, the pipeline page).

The tokens are the ones the emulator issued: the refresh token and the last access token, read
from the account's ciphertexts and decrypted with the project's token crypto; and, since every
access token the emulator issues has Google's shape (`ya29.` or `1//` and 43 URL-safe
characters), any string of that shape at all (an earlier access token, a worker's own).
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from google_emulator.demo import DEMO_USERNAME
from jobs.google.tokens import decrypt_token
from jobs.models import GoogleAccount, Job
from jobs.models.google_account import TOKEN_FIELDS
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env
from tests.isolation_world import PROJECT_APPS

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 40
EVENTS = 8
# Google's token shapes, as the emulator issues them (google_emulator/accounts.py: _token)
TOKEN_SHAPE = re.compile(r"(?:ya29\.|1//)[A-Za-z0-9_-]{40,}")
WINDOW = 16  # a run of this many characters of a token's secret part counts as a leak
ROWS_PER_MODEL = 5  # change pages opened per admin (the newest rows)


def pieces(token: str) -> set[str]:
    """The token and every WINDOW-long run of its secret part (after Google's prefix)."""
    secret = token.split(".", 1)[1] if token.startswith("ya29.") else token.removeprefix("1//")
    return {token} | {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


def found_in(texts: dict[str, str], tokens: list[str]) -> list[str]:
    hits = []
    for where, text in texts.items():
        for match in TOKEN_SHAPE.finditer(text):
            hits.append(f"{where}: a token-shaped string {match.group()[:12]}...")
        for token in tokens:
            for piece in pieces(token):
                if piece in text:
                    hits.append(f"{where}: (part of) a token, {piece[:6]}...")
                    break
    return hits


def rows_text(model) -> str:
    fields = [f.attname for f in model._meta.concrete_fields if f.name not in TOKEN_FIELDS]
    return json.dumps(list(model.objects.values(*fields)), default=str)


def test_a_demo_run_leaves_no_token_in_logs_rows_or_admin_pages(
    tmp_path, client, django_user_model
):
    logs = tmp_path / "logs"
    logs.mkdir()
    started = time.monotonic()
    done = subprocess.run(
        [PYTHON, "manage.py", "demo", "--messages", str(MESSAGES), "--events", str(EVENTS)],
        cwd=REPO_ROOT,
        env=subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.chaos.debug_log_settings",
            CRM_PIPELINE_TEST_LOG_DIR=str(logs),
            LOG_LEVEL="DEBUG",
            Q_LOG_LEVEL="DEBUG",
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    demo_s = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["jobsFailed"] == 0 and summary["interactions"] > 0

    account = GoogleAccount.objects.get(user__username=DEMO_USERNAME)
    tokens = [
        decrypt_token(account.refresh_token_encrypted),
        decrypt_token(account.access_token_encrypted),
    ]
    # the tokens are the emulator's (so the shape check below looks for the right thing)
    assert all(TOKEN_SHAPE.fullmatch(token) for token in tokens), "unexpected token shapes"
    assert tokens[0].startswith("1//") and tokens[1].startswith("ya29.")

    texts: dict[str, str] = {"demo stdout": done.stdout, "demo stderr": done.stderr}
    log_files = sorted(logs.glob("*.log"))
    for path in log_files:
        texts[f"log {path.name}"] = path.read_text(errors="replace")
    log_text = "\n".join(texts[f"log {p.name}"] for p in log_files)
    # the logs are DEBUG-level and come from the demo and its cluster's workers too
    assert len(log_files) >= 2, [p.name for p in log_files]
    assert " DEBUG " in log_text
    assert "googleapiclient" in log_text or "urllib3" in log_text, "no HTTP client logged"
    assert '"kind":"gmail_sync"' in log_text, "the cluster's workers did not log"
    assert re.search(r"process-\d+\.log", str(log_files[-1]))

    # every job row (payload, errors, metrics), django-q's task rows, every project table
    texts["jobs"] = json.dumps(
        list(Job.objects.values("id", "kind", "payload", "errors", "metrics", "last_error")),
        default=str,
    )
    assert Job.objects.filter(user=account.user).count() >= 5
    for model in apps.get_models():
        if model._meta.app_label in (*PROJECT_APPS, "django_q"):
            texts[f"rows {model._meta.label}"] = rows_text(model)

    # every admin page of the demo user's rows, as a superuser sees them
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    pages = 0
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        try:
            changelist = reverse("admin:{}_{}_changelist".format(*info))
        except NoReverseMatch:
            continue
        response = client.get(changelist)
        assert response.status_code == 200, changelist
        texts[f"page {changelist}"] = response.content.decode()
        pages += 1
        owned = [f.name for f in model._meta.concrete_fields]
        rows = model._default_manager.all()
        if "user" in owned:
            rows = rows.filter(user=account.user)
        elif model is django_user_model:
            rows = rows.filter(pk=account.user_id)
        for pk in rows.order_by("-pk").values_list("pk", flat=True)[:ROWS_PER_MODEL]:
            try:
                url = reverse("admin:{}_{}_change".format(*info), args=[pk])
            except NoReverseMatch:
                break
            response = client.get(url, follow=True)
            texts[f"page {url}"] = response.content.decode()
            pages += 1
    pipeline = client.get(reverse("admin:jobs_job_pipeline"))
    texts["page pipeline"] = pipeline.content.decode()
    assert f"page /admin/jobs/googleaccount/{account.pk}/change/" in texts

    leaks = found_in(texts, tokens)
    print(
        "FIGURES: "
        + json.dumps(
            {
                "demo_messages": MESSAGES,
                "demo_events": EVENTS,
                "demo_s": round(demo_s, 1),
                "log_files": len(log_files),
                "log_bytes": sum(p.stat().st_size for p in log_files),
                "job_rows": Job.objects.count(),
                "admin_pages": pages + 1,
                "texts_scanned": len(texts),
                "leaks": len(leaks),
            }
        )
    )
    assert not leaks, "\n".join(leaks[:30])


def test_the_scan_finds_a_token_and_a_fragment_of_one():
    token = "ya29." + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
    assert found_in({"x": f"Authorization: Bearer {token}"}, [token])
    secret_part = token[5 + 10 : 5 + 10 + WINDOW]
    assert found_in({"x": f"token {secret_part}..."}, [token])
    assert not found_in({"x": "nothing here but ya29.short"}, [token])
