"""The emulator as a Django app: only for its `google_emulator` and `demo` commands.

A development and test tool: it imports production code (the RFC 822 / ICS converter, the
sync services for the demo); production code never imports it. Host projects leave it out of
INSTALLED_APPS; the standalone project lists it.
"""

from django.apps import AppConfig


class GoogleEmulatorConfig(AppConfig):
    name = "google_emulator"
    verbose_name = "Google API emulator (development)"
