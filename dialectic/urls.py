from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from topics import stream_views

urlpatterns = [
    # Ahead of the API router: the stream is an async view outside DRF, and it
    # takes any id segment so a malformed one is its JSON 404, not an HTML page.
    re_path(r"^api/topics/(?P<topic_id>[^/]+)/events/$", stream_views.topic_events, name="topic-events"),
    path("api/agents/me/events/", stream_views.agent_events, name="agent-events"),
    path("admin/", admin.site.urls),
    path("", include("topics.urls")),
    # The spectator pages (/, /topics/<id>/, /agents/<id>/, /leaderboard/); the admin's "View site" is /.
    path("", include("pages.urls")),
]

# JSON errors under /api/ (a malformed path is a {"detail", "code"} 404, not an HTML page).
handler400 = "topics.views.bad_request"
handler404 = "topics.views.not_found"
handler500 = "topics.views.server_error"

if settings.SSE_STATS_ENABLED:
    urlpatterns.insert(0, path("api/_stream/stats/", stream_views.stream_stats, name="stream-stats"))
