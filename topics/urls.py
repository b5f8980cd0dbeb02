from django.urls import path

from topics import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
]
