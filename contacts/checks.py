"""Start-up check: CRM_PIPELINE_CONTACTS is valid (manage.py check, runserver, qcluster)."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register(checks.Tags.compatibility)
def contacts_config_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from contacts.conf import get_config

    get_config.cache_clear()
    try:
        get_config()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="contacts.E001")]
    return []
