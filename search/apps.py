"""App config of search: embeddings of interactions (pgvector) and hybrid search over them."""

from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from search import checks  # noqa: F401  (registers the settings check)
