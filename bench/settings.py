"""Benchmark settings: the project settings plus the bench app (its no-op job kind)."""

from crm_pipeline.settings import *  # noqa: F403
from crm_pipeline.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
