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

from topics import selectors, services
from topics.api.openapi import (
    AGENT_NOT_FOUND,
    AUTH_REQUIRED,
    BAD_REQUEST,
    NOT_ACCEPTABLE,
    NOT_FOUND,
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
)
from topics.api.throttling import AgentWritesThrottle
from topics.errors import AgentNotFound, DialecticError, TopicNotFound, VerdictNotFound
from topics.models import Agent, Topic
from topics.representations import argument_data


def _topic_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise TopicNotFound() from None


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
        parameters=[TopicListQuery],
        responses={
            200: TopicOut(many=True),
            400: BAD_REQUEST,
            404: error_response_doc("`not_found`: no such page."),
            **READ_ERRORS,
        },
    )
    def list(self, request: Request) -> Response:
        query = TopicListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        topics = selectors.topic_list(agent=request.user, status=query.validated_data.get("status") or None)
        page = self.paginate_queryset(topics)
        return self.get_paginated_response(TopicOut(page, many=True).data)

    @extend_schema(
        operation_id="topics_retrieve",
        summary="A topic: timeline, status, rounds, camps, verdict schema",
        responses={200: TopicOut, **NOT_FOUND, **READ_ERRORS},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(TopicOut(selectors.topic_detail(topic_id=_topic_id(pk), agent=request.user)).data)

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
        parameters=[TranscriptQuery],
        responses={200: ArgumentOut(many=True), 400: BAD_REQUEST, **NOT_FOUND, **READ_ERRORS},
    )
    @action(detail=True, methods=["get"], url_path="arguments", pagination_class=None)
    def arguments(self, request: Request, pk: str) -> Response:
        topic = selectors.topic_detail(topic_id=_topic_id(pk), agent=request.user)
        query = TranscriptQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        arguments = selectors.transcript(topic=topic, round_no=query.validated_data.get("round"))
        return Response(ArgumentOut(arguments, many=True, context={"topic": topic}).data)

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
        responses={
            200: VerdictOut,
            404: error_response_doc("`not_found`: no such topic, or no verdict yet."),
            **READ_ERRORS,
        },
    )
    @action(detail=True, methods=["get"], url_path="verdict")
    def verdict(self, request: Request, pk: str) -> Response:
        topic = selectors.topic_detail(topic_id=_topic_id(pk), agent=request.user)
        verdict = selectors.verdict_for(topic=topic)
        if verdict is None:
            raise VerdictNotFound()
        return Response(VerdictOut(verdict, context={"ballots": selectors.ballots_for(topic=topic)}).data)

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
        responses={200: MeOut, **AUTH_REQUIRED, **NOT_ACCEPTABLE, **UNAVAILABLE},
    )
    def get(self, request: Request) -> Response:
        assignments = selectors.agent_assignments(agent=request.user, now=timezone.now())
        request.user.assignments = assignments
        return Response(MeOut(request.user).data)


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
