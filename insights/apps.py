"""App config of insights: explainable relationship insights derived after the rollups; the
settings check and the contact-merge hook."""

from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from contacts import merge_hooks
        from insights import checks  # noqa: F401  (registers the settings check)
        from insights.services import MERGE_HOOK, insights_move, insights_restore

        # A contact merge moves the source's insights to the target (and back on undo).
        merge_hooks.register(MERGE_HOOK, move=insights_move, restore=insights_restore)
