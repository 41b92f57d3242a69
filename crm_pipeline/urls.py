"""URL configuration of the standalone project."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("google/", include("jobs.google.urls")),
]
