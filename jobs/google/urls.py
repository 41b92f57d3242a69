"""URLs of the Google account pages (list, connect (OAuth), callback, disconnect) and the
push endpoints Google calls."""

from django.urls import path

from jobs.google import push_views, views

app_name = "google"

urlpatterns = [
    path("", views.index, name="index"),
    path("connect/", views.connect, name="connect"),
    path("callback/", views.callback, name="callback"),
    path("<int:pk>/disconnect/", views.disconnect, name="disconnect"),
    path("push/gmail/", push_views.gmail_push, name="push-gmail"),
    path("push/calendar/", push_views.calendar_push, name="push-calendar"),
]
