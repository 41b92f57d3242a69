"""App config of timeline: registers its merge hook and the nightly rollups Schedule."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TimelineConfig(AppConfig):
    name = "timeline"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from contacts import merge_hooks
        from contacts.rollups import ensure_nightly_schedule
        from timeline.services import MERGE_HOOK, timeline_events_move, timeline_events_restore

        # A contact merge moves the source's timeline events to the target (and back on undo).
        merge_hooks.register(MERGE_HOOK, move=timeline_events_move, restore=timeline_events_restore)
        # The nightly rollups refresh (counts over 30/90/365 days decay). Its own handler:
        # jobs.schedules belongs to the jobs app.
        post_migrate.connect(
            ensure_nightly_schedule, sender=self, dispatch_uid="timeline.rollups_nightly"
        )
