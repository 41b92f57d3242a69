"""URL configuration of the standalone project."""

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("google/", include("jobs.google.urls")),
    # /health/ (load balancers) and /metrics (Prometheus)
    path("", include("jobs.urls")),
    # A sign-in page at Django's default LOGIN_URL for every user, not only staff: the Google
    # pages send anyone who is not signed in to settings.LOGIN_URL. A host project has its own.
    path(
        "accounts/login/",
        LoginView.as_view(
            template_name="admin/login.html",
            extra_context={"site_header": "crm-pipeline", "site_title": "crm-pipeline"},
        ),
        name="login",
    ),
]
