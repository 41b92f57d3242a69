"""Settings of a host project that adds crm-pipeline's three apps to an ordinary Django project."""

import os

SECRET_KEY = "host-project-test-key"
DEBUG = True
USE_TZ = True
ROOT_URLCONF = "tests.host_project.urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.postgres",
    "jobs",  # before django_q, so `qcluster` is jobs' own (jobs.W001)
    "django_q",
    "contacts",
    "timeline",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.request",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["HOST_DB_NAME"],
        "USER": os.environ.get("HOST_DB_USER", "postgres"),
        "HOST": os.environ["HOST_DB_HOST"],
        "PORT": os.environ.get("HOST_DB_PORT", ""),
        "CONN_MAX_AGE": 60,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
Q_CLUSTER = {"name": "host", "orm": "default", "workers": 1, "timeout": 660, "retry": 720}
CRM_PIPELINE = {"job_max_attempts": 3}
