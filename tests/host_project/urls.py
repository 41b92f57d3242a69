"""URLconf of the host project: the admin, and the pipeline's /health/ and /metrics."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("admin/", admin.site.urls), path("", include("jobs.urls"))]
