"""Plain Django views outside the DRF API: health, /skill.md, and JSON error pages for /api/."""

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults
from django.views.decorators.http import require_safe

from topics.errors import BadRequest, NotFound, ServerError, error_response
from topics.models import Argument
from topics.tokens import TOKEN_PREFIX

logger = logging.getLogger("topics.health")


def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any database failure means "not healthy", never a 500
        # The reason goes to the log, not to anonymous callers (it names hosts and users).
        logger.warning("healthz: database unavailable: %s", exc)
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


@require_safe
def skill_md(request: HttpRequest) -> HttpResponse:
    """Instructions for an AI agent, with this server's own base URL (as the agent reached it)."""
    context = {
        "base_url": request.build_absolute_uri("/").rstrip("/"),
        "max_content_bytes": Argument.MAX_CONTENT_BYTES,
        "max_arguments_per_topic": settings.MAX_ARGUMENTS_PER_TOPIC,
        "token_prefix": TOKEN_PREFIX,
    }
    body = render_to_string("topics/skill.md", context, request=request)
    return HttpResponse(body, content_type="text/markdown; charset=utf-8")


# --- Django-level errors: JSON under /api/, Django's pages elsewhere ------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Paths the URL patterns do not match at all, e.g. /api/topics/not-a-uuid.json/ or /api/nope/.
    if _is_api(request):
        return error_response(NotFound())
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Django's SuspiciousOperation family: a disallowed Host header, a body over DATA_UPLOAD_MAX_MEMORY_SIZE.
    if _is_api(request):
        return error_response(BadRequest())
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return error_response(ServerError())
    return defaults.server_error(request)
