"""Shared fixtures: users, a staff client, and a way to point worker subprocesses at the test DB."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from crm_pipeline.embedded_db import database_url

pytest_plugins = [
    "tests.fixtures.emulator",
    "tests.fixtures.accounts",
    "tests.fixtures.openai_server",
    "tests.fixtures.local_model",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# CRM_PIPELINE_SHARED_CORPUS points elsewhere (a worktree whose parent has no shared/ folder)
SHARED_CORPUS = Path(
    os.environ.get("CRM_PIPELINE_SHARED_CORPUS") or REPO_ROOT.parent / "shared" / "corpus"
)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", email="ada@example.com", password="pw")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", email="bob@example.com", password="pw")


@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_user(
        "operator", email="op@example.com", password="pw", is_staff=True, is_superuser=True
    )
    client.force_login(staff)
    return client


def worker_database_url() -> str:
    """DATABASE_URL of the database pytest-django created, for worker subprocesses."""
    from django.db import connection

    return database_url(connection.settings_dict)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DATABASE_URL=worker_database_url(),
        DJANGO_SETTINGS_MODULE="tests.settings",
        CRM_PIPELINE_TESTING="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env


PYTHON = sys.executable


@pytest.fixture
def pipeline_config(settings):
    """Override CRM_PIPELINE operating rules for one test: pipeline_config(gmail_chunk_size=10)."""

    def configure(**overrides: object) -> None:
        settings.CRM_PIPELINE = {**settings.CRM_PIPELINE, **overrides}

    return configure
