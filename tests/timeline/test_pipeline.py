"""The stage graph (jobs.pipeline): declared in one place, fans out, skips what is missing."""

from __future__ import annotations

import ast
from pathlib import Path

import jobs
from jobs.dispatcher import REGISTRY
from jobs.pipeline import next_stage, next_stages


def test_item6_extract_contacts_fans_out_to_write_timeline_and_update_rollups(monkeypatch):
    monkeypatch.setitem(REGISTRY, "extract_contacts", REGISTRY["write_timeline"])

    assert next_stages("extract_contacts") == ["write_timeline", "update_rollups"]
    assert (
        next_stages("normalize_gmail")
        == next_stages("normalize_calendar")
        == ["extract_contacts", "embed"]
    )
    assert next_stage("normalize_gmail") == "extract_contacts"
    # single-stage callers keep working
    assert next_stage("gmail_sync") == "normalize_gmail"
    assert next_stage("calendar_sync") == "normalize_calendar"
    assert next_stages("write_timeline") == []
    assert next_stages("update_rollups") == ["generate_insights"]
    assert next_stage("write_timeline") is None


def test_item6_a_stage_whose_app_is_missing_is_skipped(monkeypatch):
    # `embed` (the search app) is declared after normalization: without the app, skipped
    monkeypatch.delitem(REGISTRY, "embed")
    assert next_stages("normalize_gmail") == ["extract_contacts"]
    monkeypatch.delitem(REGISTRY, "extract_contacts", raising=False)
    assert next_stages("normalize_gmail") == []
    assert next_stage("normalize_gmail") is None

    monkeypatch.delitem(REGISTRY, "write_timeline")
    assert next_stages("extract_contacts") == ["update_rollups"]
    monkeypatch.delitem(REGISTRY, "update_rollups")
    assert next_stages("extract_contacts") == []


def test_item6_jobs_imports_neither_contacts_nor_timeline():
    offenders = []
    for path in Path(jobs.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.split(".")[0] in ("contacts", "timeline")
            ]
    assert offenders == []
