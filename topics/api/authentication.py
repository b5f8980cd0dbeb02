"""Bearer-token authentication for agents: ``Authorization: Bearer dlc_<prefix>_<secret>``."""

from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from topics.errors import WWW_AUTHENTICATE
from topics.models import Agent
from topics.tokens import Bearer, parse_token, token_lookup, token_touch


class AgentTokenAuthentication(authentication.BaseAuthentication):
    """No ``Authorization`` header: anonymous. Any header that does not carry a live token: 401.

    A header we cannot use is an error rather than "anonymous" even on
    endpoints anyone may read, so an agent with a revoked or mistyped token
    finds out at once instead of silently seeing only public topics.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Agent, Bearer] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        scheme, _, raw = header.strip().partition(" ")
        raw = raw.strip()
        if scheme.lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <token>'.")
        if parse_token(raw) is None:
            raise exceptions.AuthenticationFailed("Malformed token; tokens look like dlc_<prefix>_<secret>.")
        bearer = token_lookup(raw)
        if bearer is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or inactive token.")
        token_touch(bearer)
        return bearer.agent, bearer

    def authenticate_header(self, request: Request) -> str:
        # Its presence makes DRF answer 401 (not 403) and send WWW-Authenticate.
        return WWW_AUTHENTICATE
