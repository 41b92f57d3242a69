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


def check_qcluster_command(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when django-q2's own `qcluster` shadows ours (it hangs on a process-group SIGTERM)."""
    from django.apps import apps

    names = [config.name for config in apps.get_app_configs()]
    if "django_q" in names and names.index("django_q") < names.index("jobs"):
        return [
            checks.Warning(
                '"django_q" is listed before "jobs" in INSTALLED_APPS, so `manage.py qcluster` '
                "is django-q2's own command, which never exits when SIGTERM reaches its whole "
                "process group (systemd's default stop, `timeout`, `kill -- -PGID`).",
                hint='List "jobs" before "django_q" in INSTALLED_APPS (see docs/DEPLOYMENT.md).',
                id="jobs.W001",
            )
        ]
    return []
