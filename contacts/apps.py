"""App config of contacts: the settings check and the nightly rollups Schedule."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ContactsConfig(AppConfig):
    name = "contacts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from contacts import checks  # noqa: F401  (registers the settings check)
        from contacts.rollups import ensure_nightly_schedule

        # The nightly rollups refresh (counts over 30/90/365 days decay), with or without the
        # timeline app. Its own handler: jobs.schedules belongs to the jobs app.
        post_migrate.connect(
            ensure_nightly_schedule, sender=self, dispatch_uid="contacts.rollups_nightly"
        )
