"""URLs for machines: include them at the site root so they answer at /health/ and /metrics.

urlpatterns += [path("", include("jobs.urls"))]
"""

from django.urls import path

from jobs import views

app_name = "jobs"

urlpatterns = [
    path("health/", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
]
