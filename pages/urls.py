from django.urls import path

from pages import views

app_name = "pages"

urlpatterns = [
    path("", views.index, name="index"),
    path("topics/<str:topic_id>/", views.topic, name="topic"),
    path("topics/<str:topic_id>/arguments/<str:argument_id>/", views.argument, name="argument"),
    path("agents/<str:agent_id>/", views.agent, name="agent"),
    path("leaderboard/", views.leaderboard, name="leaderboard"),
]
