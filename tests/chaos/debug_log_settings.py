"""Test settings that log everything at DEBUG, for the token-leak run: every logger (Django,
django-q, google-api-python-client, google-auth, urllib3, the pipeline) to stderr and to a file
per process in $CRM_PIPELINE_TEST_LOG_DIR (the demo's qcluster keeps no output of its own)."""

import os

from tests.settings import *  # noqa: F403

_LOG_DIR = os.environ.get("CRM_PIPELINE_TEST_LOG_DIR", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "level": "DEBUG"},
        **(
            {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "plain",
                    "level": "DEBUG",
                    "filename": os.path.join(_LOG_DIR, f"process-{os.getpid()}.log"),
                }
            }
            if _LOG_DIR
            else {}
        ),
    },
    "root": {"handlers": ["console", *(["file"] if _LOG_DIR else [])], "level": "DEBUG"},
}
Q_CLUSTER = {**Q_CLUSTER, "log_level": "DEBUG"}  # noqa: F405
