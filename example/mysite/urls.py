from django.urls import path

from notes import views

urlpatterns = [
    path("", views.index),
    path("health/", views.health),
    path("async/", views.async_view),
    path("slow/", views.slow),
    path("events/", views.events),
    path("whoami/", views.whoami),
    path("notes/", views.notes),
]
