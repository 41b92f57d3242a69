"""App config of timeline: registers its merge hook."""

from django.apps import AppConfig


class TimelineConfig(AppConfig):
    name = "timeline"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from contacts import merge_hooks
        from timeline.services import MERGE_HOOK, timeline_events_move, timeline_events_restore

        # A contact merge moves the source's timeline events to the target (and back on undo).
        merge_hooks.register(MERGE_HOOK, move=timeline_events_move, restore=timeline_events_restore)
