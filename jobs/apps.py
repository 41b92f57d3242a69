"""App config: discovers every app's processors, registers the system checks and the periodic
schedules."""

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Pipeline jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs.checks import (
            check_pipeline_config,
            check_pipeline_timing,
            check_qcluster_command,
        )
        from jobs.dispatcher import autodiscover
        from jobs.schedules import ensure_schedules

        checks.register(check_pipeline_config)
        checks.register(check_qcluster_command)
        checks.register(check_pipeline_timing)
        autodiscover()
        # Each django-q2 worker process runs the hand-off pump (retries on time: jobs/pump.py).
        from jobs.pump import connect_pump

        connect_pump()
        # Schedules are rows; writing them belongs after migrate, not at import time.
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="jobs.ensure_schedules")
