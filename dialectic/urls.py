from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("topics.urls")),
]

# JSON errors under /api/ (a malformed path is a {"detail", "code"} 404, not an HTML page).
handler400 = "topics.views.bad_request"
handler404 = "topics.views.not_found"
handler500 = "topics.views.server_error"
