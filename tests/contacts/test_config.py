"""Item 4: CRM_PIPELINE_CONTACTS is read from the environment, and a bad value is refused by the
system check (contacts.E001) naming the key, the value and what is expected."""

from __future__ import annotations

import json
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tests.conftest import PYTHON, REPO_ROOT, subprocess_env


def refused(settings, value: object) -> str:
    settings.CRM_PIPELINE_CONTACTS = value
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    text = str(caught.value)
    assert "contacts.E001" in text
    return text


def test_item4_invalid_json_kept_by_the_settings_is_refused_with_the_parse_error(settings):
    text = refused(settings, "{fuzzy_threshold: 90}")
    assert "CRM_PIPELINE_CONTACTS: got '{fuzzy_threshold: 90}' (not valid JSON: Expecting" in text
    assert "expected a JSON object" in text


def test_item4_a_list_instead_of_an_object_is_refused(settings):
    text = refused(settings, ["fuzzy_threshold", 90])
    assert (
        'CRM_PIPELINE_CONTACTS: got ["fuzzy_threshold", 90] (list); expected a JSON object' in text
    )


def test_item4_an_unknown_key_is_refused(settings):
    text = refused(settings, {"fuzzy_treshold": 90})
    assert (
        "CRM_PIPELINE_CONTACTS['fuzzy_treshold']: unknown key (value 90); expected one of" in text
    )
    assert '"fuzzy_threshold"' in text


def test_item4_a_bad_regex_is_refused(settings):
    text = refused(settings, {"extra_automated_patterns": ["^robot@", "(unclosed"]})
    assert (
        "CRM_PIPELINE_CONTACTS['extra_automated_patterns']: got \"(unclosed\" (not a regular "
        "expression: missing ), unterminated subpattern at position 0); "
        "expected a list of regular expressions" in text
    )


def test_item4_every_problem_is_reported_with_its_value(settings):
    text = refused(settings, {"fuzzy_threshold": 5, "chunk_size": "big", "exclude_bulk": "yes"})
    assert (
        "CRM_PIPELINE_CONTACTS['fuzzy_threshold']: got 5; expected a number between 50 and 100"
        in text
    )
    assert (
        "CRM_PIPELINE_CONTACTS['chunk_size']: got \"big\"; expected an integer "
        "between 10 and 5000" in text
    )
    assert "CRM_PIPELINE_CONTACTS['exclude_bulk']: got \"yes\"; expected true or false" in text


def test_item4_a_valid_value_passes(settings):
    settings.CRM_PIPELINE_CONTACTS = {"fuzzy_threshold": 90, "automated_patterns": ["^bot@"]}
    call_command("check")


def run_check(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=subprocess_env(CRM_PIPELINE_CONTACTS=value),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_item4_the_environment_variable_is_read_and_checked():
    done = run_check(json.dumps({"fuzzy_threshold": 5}))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "CRM_PIPELINE_CONTACTS['fuzzy_threshold']: got 5;" in done.stderr
    done = run_check('{"fuzzy_threshold": 90,}')
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "CRM_PIPELINE_CONTACTS: got '{\"fuzzy_threshold\": 90,}' (not valid JSON:" in done.stderr
    done = run_check(json.dumps({"fuzzy_threshold": 90}))
    assert done.returncode == 0, done.stderr
