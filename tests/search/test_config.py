"""CRM_PIPELINE_SEARCH is read from the environment, and a bad value is refused by the system
check search.E001 naming the key, the value and what is expected."""

from __future__ import annotations

import json
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from search.conf import SearchConfig, get_config
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env


def refused(settings, value: object) -> str:
    settings.CRM_PIPELINE_SEARCH = value
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    text = str(caught.value)
    assert "search.E001" in text
    return text


def test_the_defaults_are_the_local_provider_and_openais_endpoint(settings):
    settings.CRM_PIPELINE_SEARCH = {}
    config = get_config()
    assert config == SearchConfig()
    assert config.provider == "local"
    assert config.openai_base_url == "https://api.openai.com/v1"
    assert config.openai_model == "text-embedding-3-small"
    assert config.openai_api_key_env == "OPENAI_API_KEY"


def test_a_change_of_the_setting_is_seen_at_once(settings):
    settings.CRM_PIPELINE_SEARCH = {"provider": "openai", "openai_dimensions": 256}
    assert get_config().provider == "openai"
    assert get_config().openai_dimensions == 256
    settings.CRM_PIPELINE_SEARCH = {"timeout_s": 5}
    assert get_config().provider == "local" and get_config().timeout_s == 5.0


def test_invalid_json_kept_by_the_settings_is_refused_with_the_parse_error(settings):
    text = refused(settings, "{provider: openai}")
    assert "CRM_PIPELINE_SEARCH: got '{provider: openai}' (not valid JSON: Expecting" in text


def test_a_list_instead_of_an_object_is_refused(settings):
    text = refused(settings, ["provider"])
    assert 'CRM_PIPELINE_SEARCH: got ["provider"] (list); expected a JSON object' in text


def test_an_unknown_key_is_refused_with_the_known_ones(settings):
    text = refused(settings, {"provdier": "openai"})
    expected = "CRM_PIPELINE_SEARCH['provdier']: unknown key (value \"openai\"); expected one of"
    assert expected in text
    assert '"provider"' in text


def test_every_problem_is_reported_with_its_value(settings):
    text = refused(
        settings,
        {
            "provider": "torch",
            "openai_dimensions": 0,
            "openai_base_url": "api.openai.com",
            "openai_api_key_env": "sk-not-a-variable-name",
            "timeout_s": "10",
            "model_dir": "  ",
        },
    )
    assert (
        'CRM_PIPELINE_SEARCH[\'provider\']: got "torch"; expected one of "local", "openai"' in text
    )
    assert (
        "CRM_PIPELINE_SEARCH['openai_dimensions']: got 0; expected an integer between 1 and "
        "65536 or null" in text
    )
    assert "CRM_PIPELINE_SEARCH['openai_base_url']: got \"api.openai.com\"; expected a" in text
    assert "CRM_PIPELINE_SEARCH['openai_api_key_env']: got \"sk-not-a-variable-name\";" in text
    assert "CRM_PIPELINE_SEARCH['timeout_s']: got \"10\"; expected a number between 0.1" in text
    assert "CRM_PIPELINE_SEARCH['model_dir']: got \"  \"; expected a string" in text


def test_a_backoff_cap_below_the_base_is_refused(settings):
    text = refused(settings, {"backoff_base_s": 10, "backoff_cap_s": 5})
    assert "CRM_PIPELINE_SEARCH['backoff_cap_s']: got 5; expected a number >= backoff_base_s" in (
        text
    )


def test_a_valid_value_passes(settings):
    settings.CRM_PIPELINE_SEARCH = {
        "provider": "openai",
        "openai_base_url": "http://localhost:11434/v1",
        "openai_model": "nomic-embed-text",
        "openai_dimensions": None,
        "batch_size": 32,
    }
    call_command("check")


def run_check(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=subprocess_env(CRM_PIPELINE_SEARCH=value),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_the_environment_variable_is_read_and_checked():
    done = run_check(json.dumps({"provider": "torch"}))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "CRM_PIPELINE_SEARCH['provider']: got \"torch\";" in done.stderr
    done = run_check('{"provider": "openai",}')
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert 'CRM_PIPELINE_SEARCH: got \'{"provider": "openai",}\' (not valid JSON:' in done.stderr
    done = run_check(json.dumps({"provider": "openai"}))
    assert done.returncode == 0, done.stderr
