"""The one exception handler: every API error becomes ``{"detail", "code"}`` or DRF's field errors.

DRF's own errors (401, 404, 405, 406, 415, 429, parse errors) keep their
status and code; domain errors (``topics.errors``) carry theirs; a database
that is down or a lock wait that timed out is a 503 the client may retry,
not a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import OperationalError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from topics.errors import DialecticError, ServiceUnavailable

logger = logging.getLogger("topics.api")

RETRY_AFTER_UNAVAILABLE = "2"


def error_body(detail: Any, code: str) -> dict[str, str]:
    return {"detail": str(detail), "code": code}


def _flatten(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    if isinstance(detail, dict):
        return " ".join(_flatten(item) for item in detail.values())
    return str(detail)


def _first_code(codes: Any, default: str) -> str:
    while isinstance(codes, list | dict):
        if not codes:
            return default
        codes = codes[0] if isinstance(codes, list) else next(iter(codes.values()))
    return codes or default


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, OperationalError):
        logger.warning("database unavailable in %s: %s", context.get("view").__class__.__name__, exc)
        exc = ServiceUnavailable()
    if isinstance(exc, DialecticError):
        set_rollback()
        headers = {"Retry-After": RETRY_AFTER_UNAVAILABLE} if isinstance(exc, ServiceUnavailable) else None
        return Response(error_body(exc.detail, exc.code), status=exc.status_code, headers=headers)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django log it and answer with the JSON 500 of topics.views.server_error
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        # Field errors keep DRF's shape; errors about the body as a whole are not field errors.
        if isinstance(detail, dict) and set(detail) != {"non_field_errors"}:
            return response
        response.data = error_body(_flatten(detail), _first_code(exc.get_codes(), "invalid"))
        return response
    if isinstance(exc, exceptions.APIException):
        code = _first_code(exc.get_codes(), exc.default_code)
    else:
        # Django's Http404 / PermissionDenied, which DRF answered as its NotFound / PermissionDenied.
        code = _DJANGO_CODES.get(response.status_code, "error")
    response.data = error_body(_flatten(response.data.get("detail", "")), code)
    return response


_DJANGO_CODES = {404: exceptions.NotFound.default_code, 403: exceptions.PermissionDenied.default_code}
