"""The API's exception handler: every API error becomes ``{"detail", "code"}`` or DRF's field errors.

DRF's own errors (401, 404, 405, 406, 415, 429, parse errors) keep their
status, code and headers; domain errors (``topics.errors``) carry theirs; a
database that is down or a lock wait that timed out is a 503 the client may
retry, not a 500. Everything but field errors is answered by
``topics.errors.error_response``, as the stream and the plain views are.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import OperationalError
from django.http import HttpResponse
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from topics.errors import ApiError, DialecticError, ServiceUnavailable, error_body, error_response

logger = logging.getLogger("topics.api")

# The headers DRF's own handler sets for its errors (401s, throttling), which the answer keeps.
_DRF_HEADERS = ("WWW-Authenticate", "Retry-After")


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


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    if isinstance(exc, OperationalError):
        logger.warning("database unavailable in %s: %s", context.get("view").__class__.__name__, exc)
        exc = ServiceUnavailable()
    if isinstance(exc, DialecticError):
        set_rollback()
        return error_response(exc)

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
    headers = {name: response[name] for name in _DRF_HEADERS if name in response}
    detail = _flatten(response.data.get("detail", ""))
    return error_response(ApiError(detail, status_code=response.status_code, code=code, headers=headers))


_DJANGO_CODES = {404: exceptions.NotFound.default_code, 403: exceptions.PermissionDenied.default_code}
