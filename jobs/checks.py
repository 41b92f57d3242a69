"""System checks: a bad configuration is refused at start-up (`check`, `qcluster`, any command)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from jobs.config import config_problems


def check_pipeline_config(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """One error per bad CRM_PIPELINE key, naming the key, the value and what is expected."""
    return [
        checks.Error(
            problem, hint="Fix settings.CRM_PIPELINE (the CRM_PIPELINE variable).", id="jobs.E001"
        )
        for problem in config_problems()
    ]
