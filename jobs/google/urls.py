"""URLs of the Google account pages: list, connect (OAuth), callback, disconnect."""

from django.urls import path

from jobs.google import views

app_name = "google"

urlpatterns = [
    path("", views.index, name="index"),
    path("connect/", views.connect, name="connect"),
    path("callback/", views.callback, name="callback"),
    path("<int:pk>/disconnect/", views.disconnect, name="disconnect"),
]
