"""CRM_PIPELINE_INSIGHTS is read from the environment, and a bad value is refused by the system
check insights.E001, naming the key, the value and what is expected."""

from __future__ import annotations

import json
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from insights.conf import DEFAULT_LLM_KINDS, get_config
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env


def refused(settings, value: object) -> str:
    settings.CRM_PIPELINE_INSIGHTS = value
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    text = str(caught.value)
    assert "insights.E001" in text
    return text


def test_defaults_without_settings(settings):
    settings.CRM_PIPELINE_INSIGHTS = {}
    config = get_config()
    assert config.llm_base_url is None and not config.llm_enabled
    assert config.llm_kinds == DEFAULT_LLM_KINDS
    assert (config.awaiting_reply_days, config.cold_gap_factor, config.expiry_days) == (
        3.0,
        2.0,
        14.0,
    )


def test_values_are_read(settings):
    settings.CRM_PIPELINE_INSIGHTS = {
        "llm_base_url": "http://localhost:11434/v1/",
        "llm_model": "llama3.1",
        "awaiting_reply_days": 2,
        "llm_kinds": ["awaiting_reply"],
    }
    config = get_config()
    assert (config.llm_base_url, config.llm_model) == ("http://localhost:11434/v1", "llama3.1")
    assert config.llm_enabled and config.llm_kinds == ("awaiting_reply",)
    assert config.awaiting_reply_days == 2.0


def test_invalid_json_is_refused_with_the_parse_error(settings):
    text = refused(settings, "{llm_model: x}")
    assert "CRM_PIPELINE_INSIGHTS: got '{llm_model: x}' (not valid JSON: Expecting" in text


def test_an_unknown_key_is_refused(settings):
    text = refused(settings, {"awaiting_days": 2})
    assert "CRM_PIPELINE_INSIGHTS['awaiting_days']: unknown key (value 2); expected one of" in text


def test_every_problem_is_reported_with_its_value(settings):
    text = refused(
        settings,
        {
            "llm_base_url": "localhost:8000",
            "llm_timeout_s": 0,
            "cold_gap_factor": "two",
            "llm_kinds": ["awaiting_reply", "gossip"],
            "llm_api_key_env": "my key",
            "meeting_prep_threads": 2.5,
        },
    )
    assert (
        "CRM_PIPELINE_INSIGHTS['llm_base_url']: got \"localhost:8000\"; expected null (no LLM) or "
        'an http(s) URL such as "https://api.openai.com/v1"' in text
    )
    assert (
        "CRM_PIPELINE_INSIGHTS['llm_timeout_s']: got 0; expected a number between 1 and 300" in text
    )
    assert (
        "CRM_PIPELINE_INSIGHTS['cold_gap_factor']: got \"two\"; expected a number between 1 and 20"
        in text
    )
    assert (
        'CRM_PIPELINE_INSIGHTS[\'llm_kinds\']: got ["awaiting_reply", "gossip"]; expected a list '
        "of insight kinds" in text
    )
    assert (
        "CRM_PIPELINE_INSIGHTS['llm_api_key_env']: got \"my key\"; expected the name of an" in text
    )
    assert (
        "CRM_PIPELINE_INSIGHTS['meeting_prep_threads']: got 2.5; expected an integer between 1 "
        "and 20" in text
    )


def test_related_thresholds_must_agree(settings):
    text = refused(settings, {"awaiting_reply_days": 10, "awaiting_reply_max_age_days": 7})
    assert (
        "CRM_PIPELINE_INSIGHTS['awaiting_reply_max_age_days']: got 7; expected more than "
        "awaiting_reply_days (10)" in text
    )


@pytest.mark.slow
def test_the_environment_variable_is_checked_at_start_up():
    result = subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=subprocess_env(CRM_PIPELINE_INSIGHTS=json.dumps({"cold_gap_factor": 0})),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "insights.E001" in result.stderr
    assert "CRM_PIPELINE_INSIGHTS['cold_gap_factor']: got 0" in result.stderr
