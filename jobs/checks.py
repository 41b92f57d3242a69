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


# Below these a valid configuration still works against itself in production: a run that stops
# before its first chunk continues for ever without progress, and a lease that ends before
# django-q2's hard kill (cap + 60 s) lets a second worker start a job the first still runs.
MIN_USEFUL_CAP_S = 10.0
MIN_SAFE_LEASE_GRACE_S = 60.0


def check_pipeline_timing(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about a job deadline too short for any work, or a lease shorter than the hard kill.

    Warnings, not errors: tests and experiments use tiny values on purpose.
    """
    from jobs.config import get_config

    if config_problems():
        return []  # jobs.E001 reports those first
    config = get_config()
    found: list[checks.CheckMessage] = []
    if config.job_wall_clock_cap_s < MIN_USEFUL_CAP_S:
        found.append(
            checks.Warning(
                f"CRM_PIPELINE['job_wall_clock_cap_s'] is {config.job_wall_clock_cap_s:g} s: a "
                "sync run stops before it can fetch a chunk and continues without progress.",
                hint=f"Use at least {MIN_USEFUL_CAP_S:g} s (the default is 600).",
                id="jobs.W002",
            )
        )
    if config.lease_grace_s < MIN_SAFE_LEASE_GRACE_S:
        found.append(
            checks.Warning(
                f"CRM_PIPELINE['lease_grace_s'] is {config.lease_grace_s:g} s: a lease may end "
                "before django-q2's hard kill (60 s after the deadline), so tick can hand a job "
                "that still runs to a second worker (its writes are fenced, its time is lost).",
                hint=f"Use at least {MIN_SAFE_LEASE_GRACE_S:g} s (the default is 120).",
                id="jobs.W002",
            )
        )
    return found
