"""The client's address behind the TLS proxy (``DJANGO_BEHIND_TLS_PROXY``), for the admin login's rate limit.

The proxy sets ``X-Forwarded-For`` to the address that connected to it
(docs/nginx.conf replaces the header) or appends that address to it
(``proxy_add_x_forwarded_for``): either way the last entry is the one value
a client cannot choose; anything before it is whatever the client sent. One proxy hop is assumed: behind a second one
(a CDN in front of nginx) the last entry would be that proxy's address.
"""

from __future__ import annotations

from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    last = forwarded.rsplit(",", 1)[-1].strip()
    return last or request.META.get("REMOTE_ADDR")
