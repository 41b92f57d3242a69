"""App config: discovers every app's processors and registers the periodic schedules."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Pipeline jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs.dispatcher import autodiscover
        from jobs.schedules import ensure_schedules

        autodiscover()
        # Schedules are rows; writing them belongs after migrate, not at import time.
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="jobs.ensure_schedules")
