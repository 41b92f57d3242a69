"""Start-up check: CRM_PIPELINE_CONTACTS is valid (manage.py check, runserver, qcluster)."""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register(checks.Tags.compatibility)
def contacts_config_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """One error per bad CRM_PIPELINE_CONTACTS key, naming the key, the value and what is
    expected."""
    from contacts.conf import SETTINGS

    return SETTINGS.check(app_configs, **kwargs)
