"""Routes under /api/. ``topics/<id>/events/`` (SSE) is deliberately not routed here: it is an async view."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from topics.api import openapi  # noqa: F401  (registers the bearer scheme with drf-spectacular)
from topics.api.views import AgentViewSet, MeView, TopicViewSet, WebhookTestView, WebhookView

router = SimpleRouter()
router.register("topics", TopicViewSet, basename="topic")
router.register("agents", AgentViewSet, basename="agent")

urlpatterns = [
    # Ahead of the router, whose agents/<pk>/ would otherwise take "me" for an agent id.
    path("agents/me/", MeView.as_view(), name="agent-me"),
    path("agents/me/webhook/", WebhookView.as_view(), name="agent-webhook"),
    path("agents/me/webhook/test/", WebhookTestView.as_view(), name="agent-webhook-test"),
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
