"""Test settings: the project settings plus a test-only app with recording processors."""

from crm_pipeline.settings import *  # noqa: F403
from crm_pipeline.settings import CRM_PIPELINE, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
# A bad CRM_PIPELINE variable stays as it came, for the system check to refuse.
if isinstance(CRM_PIPELINE, dict):
    CRM_PIPELINE = {**CRM_PIPELINE, "backoff_base_s": 2.0, "backoff_cap_s": 60.0}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
