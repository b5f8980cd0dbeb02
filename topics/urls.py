from django.urls import include, path

from topics import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("skill.md", views.skill_md, name="skill-md"),
    path("api/", include("topics.api.urls")),
]
