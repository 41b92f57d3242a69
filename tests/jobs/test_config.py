"""Issue 8 item 7: a bad CRM_PIPELINE is refused at start-up by a system check, naming the key,
the value and what is expected; ranges and choices come from the fields' metadata."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field, fields

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from jobs.config import PipelineConfig, config_problems, get_config
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env


def refused(settings, value: object) -> str:
    """Set CRM_PIPELINE, run `check`, return its error text (and insist get_config refuses too)."""
    settings.CRM_PIPELINE = value
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    with pytest.raises(ImproperlyConfigured):
        get_config()
    return str(caught.value)


def test_item7_valid_configuration_passes_the_check(settings):
    settings.CRM_PIPELINE = {
        "job_max_attempts": 3,
        "gmail_excluded_labels": ["SPAM", "Label_12"],
        "gmail_excluded_categories": ["promotions", "CATEGORY_SOCIAL"],
        "backoff_cap_s": 30,  # an int where a float is expected is fine
        "handoff": "none",
    }
    call_command("check")
    config = get_config()
    assert config.gmail_excluded_labels == ("SPAM", "Label_12")
    assert config.backoff_cap_s == 30.0 and isinstance(config.backoff_cap_s, float)


def test_item7_a_string_for_a_list_is_refused_not_split_into_letters(settings):
    text = refused(settings, {"gmail_excluded_labels": "SPAM"})
    assert "CRM_PIPELINE['gmail_excluded_labels']: got \"SPAM\"; expected a list of strings" in text


def test_item7_an_unknown_handoff_is_refused(settings):
    text = refused(settings, {"handoff": "celery"})
    assert 'CRM_PIPELINE[\'handoff\']: got "celery"; expected one of "django_q", "none"' in text


def test_item7_a_list_instead_of_an_object_is_refused(settings):
    text = refused(settings, ["job_max_attempts", 3])
    assert 'CRM_PIPELINE: got ["job_max_attempts", 3] (list); expected a JSON object' in text


def test_item7_invalid_json_kept_by_the_settings_is_refused_with_the_parse_error(settings):
    text = refused(settings, "{job_max_attempts: 3}")
    assert "CRM_PIPELINE: got '{job_max_attempts: 3}' (not valid JSON: Expecting property" in text
    assert "expected a JSON object" in text


def test_item7_a_word_for_a_number_is_refused(settings):
    text = refused(settings, {"job_wall_clock_cap_s": "thirty"})
    assert (
        "CRM_PIPELINE['job_wall_clock_cap_s']: got \"thirty\"; "
        "expected a number between 0 and 86400" in text
    )


def test_item7_an_unknown_key_is_refused_by_check_not_at_the_first_enqueue(settings):
    text = refused(settings, {"job_max_attemps": 3})
    assert "CRM_PIPELINE['job_max_attemps']: unknown key (value 3)" in text


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("job_wall_clock_cap_s", -5, "a number between 0 and 86400"),
        ("backoff_cap_s", -5, "a number between 0 and 86400"),
        ("job_max_attempts", 0, "an integer between 1 and 100"),
        ("gmail_chunk_size", 5000, "an integer between 1 and 50"),
        ("job_max_attempts", 2.5, "an integer between 1 and 100"),
        ("job_max_attempts", True, "an integer between 1 and 100"),
        ("gmail_excluded_categories", ["promotions", "spam"], "a list of strings, each one of"),
        ("calendar_selection", " , ", "a string matching the pattern"),
    ],
)
def test_item7_out_of_range_values_are_refused(settings, key, value, expected):
    text = refused(settings, {key: value})
    assert f"CRM_PIPELINE[{key!r}]: got {json.dumps(value)}; expected {expected}" in text


def test_item7_every_problem_is_reported_at_once(settings):
    settings.CRM_PIPELINE = {"job_max_attempts": 0, "handoff": "x", "nope": 1}
    assert len(config_problems()) == 3


def test_item7_backoff_cap_below_its_base_is_refused(settings):
    text = refused(settings, {"backoff_base_s": 10, "backoff_cap_s": 5})
    assert "expected a number >= backoff_base_s (10)" in text


def test_item7_every_field_declares_its_valid_values():
    for f in fields(PipelineConfig):
        assert {"min", "max", "choices", "pattern"} & set(f.metadata), f.name
        if "min" in f.metadata:
            assert "max" in f.metadata, f.name
            assert f.metadata["min"] <= f.default <= f.metadata["max"], f.name
    assert config_problems.__module__ == "jobs.config"


def run_manage(*args: str, crm_pipeline: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(CRM_PIPELINE=crm_pipeline)
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["check", "qcluster"])
def test_item7_bad_json_in_the_environment_variable_is_one_clear_error(command):
    done = run_manage(command, crm_pipeline='{"job_max_attempts": 3,}')
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "CRM_PIPELINE: got '{\"job_max_attempts\": 3,}' (not valid JSON:" in done.stderr
    assert "expected a JSON object" in done.stderr


@pytest.mark.slow
def test_item7_manage_py_check_names_key_value_and_expectation():
    done = run_manage("check", crm_pipeline=json.dumps({"gmail_chunk_size": 5000}))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert (
        "CRM_PIPELINE['gmail_chunk_size']: got 5000; expected an integer between 1 and 50"
        in done.stderr
    )


def test_item10_django_q_listed_before_jobs_is_warned_about(settings):
    from jobs.checks import check_qcluster_command

    assert check_qcluster_command() == []
    apps = [a for a in settings.INSTALLED_APPS if a != "django_q"]
    apps.insert(apps.index("jobs"), "django_q")
    with override_settings(INSTALLED_APPS=apps):
        (warning,) = check_qcluster_command()
    assert warning.id == "jobs.W001"
    assert 'List "jobs" before "django_q"' in warning.hint


@dataclass(frozen=True)
class _Optional:
    horizon_days: int | None = field(default=730, metadata={"min": 1, "max": 36_500})


def test_item7_an_optional_key_takes_null_and_still_checks_its_range():
    from jobs.config import _convert, _expected, _specs

    spec = _specs(_Optional)["horizon_days"]
    assert _convert(spec, None) == (True, None)
    assert _convert(spec, 90) == (True, 90)
    assert _convert(spec, 0) == (False, None)
    assert _expected(spec) == "an integer between 1 and 36500 or null"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"job_wall_clock_cap_s": 0}, "continues without progress"),
        ({"lease_grace_s": 5}, "before django-q2's hard kill"),
    ],
)
def test_timing_that_works_against_itself_is_warned_about(settings, overrides, expected):
    from jobs.checks import check_pipeline_timing

    settings.CRM_PIPELINE = overrides
    warnings = check_pipeline_timing()
    assert [w.id for w in warnings] == ["jobs.W002"]
    assert expected in warnings[0].msg


def test_default_timing_is_not_warned_about(settings):
    from jobs.checks import check_pipeline_timing

    settings.CRM_PIPELINE = {}
    assert check_pipeline_timing() == []
