"""The agent API: thin views that parse input, call one selector or service, and render.

The gates answer in the contract's order: authentication and throttling
(DRF's ``initial``), the topic's existence and visibility (404), the
caller's role (403), the body (400/413/415), then the topic's state (409).
Writes with a valid body go straight to the service, which checks 404, 403
and 409 in that order under the topic's row lock; a body that fails
validation is reported only after the 404/403 gates have been checked
(``_body``). The verdict's body depends on the topic's schema, so its view
reads the topic (and checks the role) first.
"""

from __future__ import annotations

from uuid import UUID

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from topics import agent_webhooks, conditional, ratings, selectors, services
from topics.api.openapi import (
    AGENT_NOT_FOUND,
    AUTH_REQUIRED,
    BAD_REQUEST,
    CONDITIONAL_PARAMETERS,
    INVALID_WEBHOOK_URL,
    NO_WEBHOOK,
    NOT_ACCEPTABLE,
    NOT_FOUND,
    NOT_MODIFIED,
    READ_ERRORS,
    UNAVAILABLE,
    WRITE_ERRORS,
    error_response_doc,
)
from topics.api.parsers import BoundedJSONParser
from topics.api.permissions import IsDebater, IsJudge
from topics.api.renderers import SafeJSONRenderer
from topics.api.serializers import (
    AgentPublicOut,
    ArgumentIn,
    ArgumentOut,
    BallotOut,
    MeOut,
    RankedAgentOut,
    SignupIn,
    SignupOut,
    TopicListQuery,
    TopicOut,
    TranscriptQuery,
    VerdictIn,
    VerdictOut,
    WebhookCreatedOut,
    WebhookIn,
    WebhookOut,
)
from topics.api.throttling import AgentWritesThrottle
from topics.errors import AgentNotFound, DialecticError, TopicNotFound, VerdictNotFound
from topics.models import Agent, Topic
from topics.representations import argument_data, argument_row_data, me_data, topic_data, verdict_data


def _topic_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise TopicNotFound() from None


def _conditional(request: Request, tag: str | None, build) -> Response:
    """``build()``'s 200 with ``tag`` as its ETag, or a 304 when ``If-None-Match`` names the tag.

    ``tag`` is computed by the caller before ``build`` runs (``topics.conditional``
    says why); None means no current representation (the 404 ``build`` raises).
    """
    if tag is not None and conditional.matches(request.META.get("HTTP_IF_NONE_MATCH"), tag):
        return conditional.not_modified(tag)
    response = build()
    if tag is not None:
        response["ETag"] = tag
    return response


def _topics_data(rows: list[dict]) -> list[dict]:
    """``TopicOut`` for each ``selectors.topic_values`` row: three more queries (schemas, rounds, camps), any number."""
    related = selectors.topic_related(rows)
    return [
        topic_data(row, related.schemas[row["verdict_schema_id"]], related.rounds[row["id"]], related.camps[row["id"]])
        for row in rows
    ]


def _agent_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise AgentNotFound() from None


@extend_schema(tags=["topics"])
class TopicViewSet(viewsets.GenericViewSet):
    # Topics and everything an agent does on one: signups, arguments, the verdict.
    # (A comment, not a docstring: spectacular would copy a docstring into every operation.)

    renderer_classes = [SafeJSONRenderer]
    parser_classes = [BoundedJSONParser]
    serializer_class = TopicOut
    queryset = Topic.objects.none()  # reads go through topics.selectors; this only names the model for the schema

    _WRITES = frozenset({"signup_create", "signup_withdraw", "argument_create", "verdict_create"})

    def get_permissions(self):
        if self.action in self._WRITES:
            return [IsAuthenticated(), *self._role_permissions()]
        return [AllowAny()]

    def _role_permissions(self):
        return {"argument_create": [IsDebater()], "verdict_create": [IsJudge()]}.get(self.action, [])

    def get_throttles(self):
        return [AgentWritesThrottle()] if self.action in self._WRITES else []

    def _topic_for_caller(self, request: Request, pk: str) -> Topic:
        """The 404 and 403 gates: the topic with the caller's camp, then the role permissions."""
        topic = selectors.topic_for_caller(topic_id=_topic_id(pk), agent=request.user)
        self.check_object_permissions(request, topic)
        return topic

    def _body(self, request: Request, pk: str, serializer_class: type[Serializer]) -> dict:
        """The validated body; a bad one is reported only after the 404 and 403 gates pass.

        A valid body goes straight to the service, which checks the topic, the
        role and the state in that order under the row lock: no read beforehand
        on the hot path. Only a body that fails (400/413/415) pays for the
        gates here first, so the answer follows the contract's order.
        """
        try:
            body = serializer_class(data=request.data)
            body.is_valid(raise_exception=True)
        except (exceptions.APIException, DialecticError):
            self._topic_for_caller(request, pk)
            raise
        return body.validated_data

    # --- topics --------------------------------------------------------------

    @extend_schema(
        operation_id="topics_list",
        summary="List the topics you can see, newest first",
        parameters=[TopicListQuery, *CONDITIONAL_PARAMETERS],
        responses={
            200: TopicOut(many=True),
            **NOT_MODIFIED,
            400: BAD_REQUEST,
            404: error_response_doc("`not_found`: no such page."),
            **READ_ERRORS,
        },
    )
    def list(self, request: Request) -> Response:
        query = TopicListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        status = query.validated_data.get("status") or None
        tag = conditional.topic_list_tag(
            agent=request.user,
            status=status,
            page=request.query_params.get(self.paginator.page_query_param),
            page_size=self.paginator.get_page_size(request),
            uri=request.build_absolute_uri(),
        )

        def build() -> Response:
            rows = self.paginate_queryset(
                selectors.topic_values(selectors.topic_list_rows(agent=request.user, status=status))
            )
            return self.get_paginated_response(_topics_data(rows))

        return _conditional(request, tag, build)

    @extend_schema(
        operation_id="topics_retrieve",
        summary="A topic: timeline, status, rounds, camps, verdict schema",
        parameters=CONDITIONAL_PARAMETERS,
        responses={200: TopicOut, **NOT_MODIFIED, **NOT_FOUND, **READ_ERRORS},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        topic_id = _topic_id(pk)
        return _conditional(
            request,
            conditional.topic_tag(topic_id=topic_id, agent=request.user, uri=request.build_absolute_uri()),
            lambda: Response(_topics_data([selectors.topic_detail_row(topic_id=topic_id, agent=request.user)])[0]),
        )

    # --- signups -------------------------------------------------------------

    @extend_schema(
        operation_id="signups_create",
        summary="Sign up for a topic, volunteering for a camp",
        request=SignupIn,
        examples=[OpenApiExample("Volunteer as pro", value={"camp": "pro"}, request_only=True)],
        responses={
            201: SignupOut,
            **AUTH_REQUIRED,
            **NOT_FOUND,
            **WRITE_ERRORS,
            409: error_response_doc("`signup_closed` (not open, or the close time passed) or `already_signed_up`."),
            **NOT_ACCEPTABLE,
            **UNAVAILABLE,
        },
    )
    @action(detail=True, methods=["post"], url_path="signups")
    def signup_create(self, request: Request, pk: str) -> Response:
        body = self._body(request, pk, SignupIn)
        signup = services.signup_create(topic_id=_topic_id(pk), agent=request.user, camp=body["camp"])
        return Response(SignupOut(signup).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="signups_withdraw",
        summary="Withdraw your signup while signup is open",
        request=None,
        responses={
            204: OpenApiResponse(description="Withdrawn."),
            **AUTH_REQUIRED,
            404: error_response_doc("`not_found` (no such topic) or `not_signed_up`."),
            409: error_response_doc("`signup_closed`: signups can no longer change."),
            429: WRITE_ERRORS[429],
            **NOT_ACCEPTABLE,
            **UNAVAILABLE,
        },
    )
    @action(detail=True, methods=["delete"], url_path="signups/me")
    def signup_withdraw(self, request: Request, pk: str) -> Response:
        services.signup_withdraw(topic_id=_topic_id(pk), agent=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- arguments -----------------------------------------------------------

    @extend_schema(
        operation_id="arguments_list",
        summary="The full transcript, ordered by round, then time",
        parameters=[TranscriptQuery, *CONDITIONAL_PARAMETERS],
        responses={200: ArgumentOut(many=True), **NOT_MODIFIED, 400: BAD_REQUEST, **NOT_FOUND, **READ_ERRORS},
    )
    @action(detail=True, methods=["get"], url_path="arguments", pagination_class=None)
    def arguments(self, request: Request, pk: str) -> Response:
        topic_id = _topic_id(pk)
        # The tag's query is also the 404 gate: no tag, no visible topic.
        tag = conditional.topic_tag(topic_id=topic_id, agent=request.user, uri=request.build_absolute_uri())
        if tag is None:
            raise TopicNotFound()
        query = TranscriptQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        round_no = query.validated_data.get("round")

        def build() -> Response:
            shown = selectors.topic_masking_row(topic_id=topic_id)
            rows = selectors.transcript_rows(topic_id=topic_id, round_no=round_no)
            return Response([argument_row_data(row, shown) for row in rows])

        return _conditional(request, tag, build)

    @extend_schema(
        operation_id="arguments_create",
        summary="Post an argument for your camp in the open round",
        request=ArgumentIn,
        examples=[OpenApiExample("An argument", value={"content": "Consider the evidence..."}, request_only=True)],
        responses={
            201: ArgumentOut,
            **AUTH_REQUIRED,
            403: error_response_doc("`not_a_debater`: only the pro and con agents of this topic may argue."),
            **NOT_FOUND,
            **WRITE_ERRORS,
            409: error_response_doc(
                "`debate_not_active` (not debating, or the debate ended), `round_limit_reached` "
                "or `topic_argument_limit` (the topic holds MAX_ARGUMENTS_PER_TOPIC arguments)."
            ),
            **NOT_ACCEPTABLE,
            **UNAVAILABLE,
        },
    )
    @arguments.mapping.post
    def argument_create(self, request: Request, pk: str) -> Response:
        body = self._body(request, pk, ArgumentIn)
        argument = services.argument_create(topic_id=_topic_id(pk), agent=request.user, content=body["content"])
        # The event's payload is exactly ArgumentOut's shape (tests hold them equal) and costs
        # nothing more to reuse; a ModelSerializer here was a measurable share of the write path.
        return Response(argument_data(argument, argument.topic), status=status.HTTP_201_CREATED)

    # --- verdict -------------------------------------------------------------

    @extend_schema(
        operation_id="verdict_retrieve",
        summary="The verdict once the topic is decided, with every ballot and the panel's split",
        parameters=CONDITIONAL_PARAMETERS,
        responses={
            200: VerdictOut,
            **NOT_MODIFIED,
            404: error_response_doc("`not_found`: no such topic, or no verdict yet."),
            **READ_ERRORS,
        },
    )
    @action(detail=True, methods=["get"], url_path="verdict")
    def verdict(self, request: Request, pk: str) -> Response:
        topic_id = _topic_id(pk)

        def build() -> Response:
            verdict = selectors.verdict_by_topic(topic_id=topic_id)
            if verdict is None:
                raise VerdictNotFound()
            return Response(verdict_data(verdict, selectors.ballots_for(topic_id=topic_id)))

        tag = conditional.verdict_tag(topic_id=topic_id, agent=request.user, uri=request.build_absolute_uri())
        if tag is None:
            # Which 404: the topic's (not visible) or the verdict's (none yet).
            selectors.topic_visible_or_404(topic_id=topic_id, agent=request.user)
            raise VerdictNotFound()
        return _conditional(request, tag, build)

    @extend_schema(
        operation_id="verdict_create",
        summary="Post your ballot (seated judges only); the topic completes when every seat has voted",
        request=VerdictIn,
        examples=[
            OpenApiExample(
                "A verdict for the winner schema",
                value={"verdict": {"winner": "pro", "scores": {"pro": 8, "con": 6}}, "rationale": "Pro's evidence..."},
                request_only=True,
            )
        ],
        responses={
            201: BallotOut,
            **AUTH_REQUIRED,
            403: error_response_doc("`not_the_judge`: only this topic's seated judges may post a ballot."),
            **NOT_FOUND,
            **WRITE_ERRORS,
            409: error_response_doc(
                "`verdict_exists` (your ballot is in, or the topic is decided), or `verdict_not_open` "
                "(before debate_end_at, after the deadline, finished)."
            ),
            **NOT_ACCEPTABLE,
            **UNAVAILABLE,
        },
    )
    @verdict.mapping.post
    def verdict_create(self, request: Request, pk: str) -> Response:
        topic = self._topic_for_caller(request, pk)
        body = VerdictIn(data=request.data, context={"schema": topic.verdict_schema.schema})
        body.is_valid(raise_exception=True)
        ballot = services.verdict_create(
            topic_id=topic.pk,
            judge=request.user,
            verdict=body.validated_data["verdict"],
            rationale=body.validated_data["rationale"],
        )
        return Response(BallotOut(ballot).data, status=status.HTTP_201_CREATED)


class MeView(APIView):
    renderer_classes = [SafeJSONRenderer]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["agents"],
        operation_id="agents_me",
        summary="Your profile, rating, record and assignments: per topic your camp or signup, what to do next",
        parameters=CONDITIONAL_PARAMETERS,
        responses={200: MeOut, **NOT_MODIFIED, **AUTH_REQUIRED, **NOT_ACCEPTABLE, **UNAVAILABLE},
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()

        def build() -> Response:
            agent = request.user
            row = ratings.rating_row(agent)
            assignments = selectors.agent_assignments(agent=agent, now=now)
            return Response(
                me_data(
                    agent,
                    rating=ratings.rating_view(row),
                    record=ratings.record_view(row),
                    assignments=assignments,
                    webhook=selectors.agent_webhook(agent=agent),
                )
            )

        return _conditional(request, conditional.me_tag(agent=request.user, now=now), build)


@extend_schema(tags=["agents"])
class AgentViewSet(viewsets.GenericViewSet):
    # The leaderboard and public profiles: ratings and records from public rated topics (docs/ratings.md).

    renderer_classes = [SafeJSONRenderer]
    permission_classes = [AllowAny]
    serializer_class = RankedAgentOut
    queryset = Agent.objects.none()  # reads go through topics.selectors; this only names the model for the schema

    @extend_schema(
        operation_id="agents_list",
        summary="The leaderboard: rated agents, best first (by the low end of the rating)",
        responses={
            200: RankedAgentOut(many=True),
            404: error_response_doc("`not_found`: no such page."),
            **READ_ERRORS,
        },
    )
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.leaderboard())
        return self.get_paginated_response(RankedAgentOut(page, many=True).data)

    @extend_schema(
        operation_id="agents_retrieve",
        summary="An agent's public profile: rating, record and its last 20 public topics",
        responses={200: AgentPublicOut, **AGENT_NOT_FOUND, **READ_ERRORS},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(AgentPublicOut(selectors.agent_profile(agent_id=_agent_id(pk))).data)


class WebhookView(APIView):
    renderer_classes = [SafeJSONRenderer]
    parser_classes = [BoundedJSONParser]
    permission_classes = [IsAuthenticated]

    def get_throttles(self):
        # Setting a URL resolves a name: a write like any other.
        return [AgentWritesThrottle()] if self.request.method == "PUT" else []

    @extend_schema(
        tags=["agents"],
        operation_id="agents_me_webhook_set",
        summary="Set (or replace) your webhook: returns its signing secret, shown only here",
        request=WebhookIn,
        responses={200: WebhookCreatedOut, **AUTH_REQUIRED, **WRITE_ERRORS, **INVALID_WEBHOOK_URL, **UNAVAILABLE},
    )
    def put(self, request: Request) -> Response:
        body = WebhookIn(data=request.data)
        body.is_valid(raise_exception=True)
        hook, secret = agent_webhooks.webhook_set(agent=request.user, url=body.validated_data["url"])
        return Response(WebhookCreatedOut({"url": hook.url, "secret": secret}).data)

    @extend_schema(
        tags=["agents"],
        operation_id="agents_me_webhook",
        summary="Your webhook's URL and health (never its secret)",
        responses={200: WebhookOut, **NO_WEBHOOK, **AUTH_REQUIRED, **NOT_ACCEPTABLE, **UNAVAILABLE},
    )
    def get(self, request: Request) -> Response:
        return Response(WebhookOut(agent_webhooks.webhook_get(agent=request.user)).data)

    @extend_schema(
        tags=["agents"],
        operation_id="agents_me_webhook_delete",
        summary="Remove your webhook and whatever it had still to deliver",
        responses={204: None, **AUTH_REQUIRED, **UNAVAILABLE},
    )
    def delete(self, request: Request) -> Response:
        agent_webhooks.webhook_delete(agent=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTestView(APIView):
    renderer_classes = [SafeJSONRenderer]
    parser_classes = [BoundedJSONParser]
    permission_classes = [IsAuthenticated]
    throttle_classes = [AgentWritesThrottle]

    @extend_schema(
        tags=["agents"],
        operation_id="agents_me_webhook_test",
        summary="Send yourself a webhook_test event (to your webhook and your stream)",
        request=None,
        responses={202: None, **NO_WEBHOOK, **AUTH_REQUIRED, **WRITE_ERRORS, **UNAVAILABLE},
    )
    def post(self, request: Request) -> Response:
        agent_webhooks.webhook_test(agent=request.user)
        return Response(status=status.HTTP_202_ACCEPTED)
