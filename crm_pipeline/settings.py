"""Settings for the standalone project, read from the environment (12-factor, django-environ)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent.parent


def _json_setting(raw: str) -> Any:
    """A JSON environment variable, or the raw text when it is not JSON (the checks report it)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _number(values: object, key: str, default: int) -> int:
    """values[key] as an int, or the default when it is missing or bad (the checks report it)."""
    value = values.get(key, default) if isinstance(values, dict) else default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

TESTING = "pytest" in sys.modules or env.bool("CRM_PIPELINE_TESTING", default=False)
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        # One line, not a traceback (an exception here surfaces as one in every command).
        sys.exit("crm_pipeline: set SECRET_KEY (or DEBUG=true for local development)")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # pgvector's HnswIndex needs django.contrib.postgres.
    "django.contrib.postgres",
    # Before django_q: jobs' `qcluster` (which stops on a process-group SIGTERM) replaces
    # django-q2's own (system check jobs.W001).
    "jobs",
    "django_q",
    "contacts",
    "timeline",
    "search",
    "insights",
    # Development and test tool (the `google_emulator` and `demo` commands); a host project
    # leaves it out.
    "google_emulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "crm_pipeline.urls"
WSGI_APPLICATION = "crm_pipeline.wsgi.application"
ASGI_APPLICATION = "crm_pipeline.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------------------
# With DATABASE_URL unset, an embedded PostgreSQL 18 + pgvector starts in CRM_PIPELINE_PGDATA.
if env.str("DATABASE_URL", default=""):
    DATABASE_URL = env.str("DATABASE_URL")
else:
    from crm_pipeline.embedded_db import (
        command_needs_database,
        embedded_database_url,
        idle_database_url,
    )

    _pgdata = Path(env.str("CRM_PIPELINE_PGDATA", default=str(BASE_DIR / ".pgdata")))
    # `help`, `--version` and `google_emulator` neither start the server nor keep it up.
    if command_needs_database(sys.argv):
        DATABASE_URL = embedded_database_url(_pgdata)
    else:
        DATABASE_URL = idle_database_url(_pgdata)
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# django-environ leaves a "?host=/socket/dir" in OPTIONS; Django reads it best as HOST.
if not DATABASES["default"].get("HOST") and "host" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
# Persistent connections: with 0 django-q2's ORM broker reconnects per call and runs ~6x slower.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- django-q2 ------------------------------------------------------------------------------
# --- crm-pipeline operating rules (every key optional; defaults in jobs/config.py) -----------
# Bad JSON stays a string here: the system check jobs.E001 then refuses it with the parse error
# in one line (a traceback from this module would be all a user saw).
CRM_PIPELINE: dict[str, object] | str = _json_setting(env.str("CRM_PIPELINE", default=""))
# Contact resolution (contacts/conf.py); bad JSON likewise stays a string for contacts.E001.
CRM_PIPELINE_CONTACTS: dict[str, object] | str = _json_setting(
    env.str("CRM_PIPELINE_CONTACTS", default="")
)
# Search and embeddings (search/conf.py); bad JSON likewise stays a string for search.E001.
CRM_PIPELINE_SEARCH: dict[str, object] | str = _json_setting(
    env.str("CRM_PIPELINE_SEARCH", default="")
)
# Insights (insights/conf.py): rules, expiry and the optional LLM; checked by insights.E001.
CRM_PIPELINE_INSIGHTS: dict[str, object] | str = _json_setting(
    env.str("CRM_PIPELINE_INSIGHTS", default="")
)

# --- Google -----------------------------------------------------------------------------------
# GOOGLE_API_ROOT "" means Google itself; set it to the emulator's root ("http://127.0.0.1:PORT/")
# for demos and tests. Endpoints left empty are derived from it at call time
# (jobs.google.credentials), so a test can point GOOGLE_API_ROOT elsewhere.
GOOGLE_API_ROOT = env.str("GOOGLE_API_ROOT", default="")
GOOGLE_TOKEN_URI = env.str("GOOGLE_TOKEN_URI", default="")
GOOGLE_AUTH_URI = env.str("GOOGLE_AUTH_URI", default="")
GOOGLE_REVOKE_URI = env.str("GOOGLE_REVOKE_URI", default="")
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")
# Empty: built from the request (the "google_callback" URL on the host the user came from).
GOOGLE_REDIRECT_URI = env.str("GOOGLE_REDIRECT_URI", default="")
# Fernet keys (urlsafe base64, comma-separated): the first encrypts, all decrypt, so a new key is
# rotated in by prepending it, running `manage.py rotate_tokens`, then dropping the old one.
# Required outside DEBUG/tests (system check crm_pipeline.E001).
CRM_PIPELINE_ENCRYPTION_KEYS: list[str] = env.list("CRM_PIPELINE_ENCRYPTION_KEYS", default=[])

REDIS_URL = env.str("REDIS_URL", default="")
_job_cap_s = _number(CRM_PIPELINE, "job_wall_clock_cap_s", 600)
Q_CLUSTER: dict[str, object] = {
    "name": env.str("Q_CLUSTER_NAME", default="crm_pipeline"),
    "workers": env.int("Q_WORKERS", default=2),
    # django-q2's timeout is the hard backstop behind the cooperative deadline.
    "timeout": _job_cap_s + 60,
    "retry": _job_cap_s + 120,
    # Retries are decided by the Job row, not by the broker.
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": env.int("Q_SAVE_LIMIT", default=250),
    "catch_up": False,
    "poll": env.float("Q_POLL", default=0.2),
    "label": "Django Q2",
    # django-q2 logs every enqueue at INFO on its own "django-q" logger.
    "log_level": env.str("Q_LOG_LEVEL", default="WARNING"),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "bare": {"format": "%(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "metrics": {"class": "logging.StreamHandler", "formatter": "bare"},
    },
    "loggers": {
        "jobs.metrics": {"handlers": ["metrics"], "level": "INFO", "propagate": False},
        "jobs": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    },
}
