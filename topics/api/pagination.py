"""The API's page-number pagination, strict about the ``page`` parameter the document calls an integer."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination


class StrictPageNumberPagination(PageNumberPagination):
    """DRF's pagination, except that a blank ``?page=`` is refused like any other invalid page.

    DRF reads a blank page as page 1; the OpenAPI document says the parameter is an integer, so a
    client sending it blank has a bug worth hearing about (DRF answers an invalid page with 404).
    """

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not raw.strip():
            raise NotFound(self.invalid_page_message)
        return super().get_page_number(request, paginator)
