"""Input serializers (parse and validate bodies and query strings) and output representations."""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from fabric_bridge.models import Webhook
from topics import ratings
from topics.models import (
    Agent,
    Argument,
    Ballot,
    Camp,
    CampName,
    Outcome,
    Round,
    Signup,
    Topic,
    TopicStatus,
    Verdict,
    VerdictSchema,
)
from topics.next_action import NextAction
from topics.representations import ballot_data, camps_data, debater_ref
from topics.validation import json_size, json_text_problem, text_problem
from topics.verdict_schemas import verdict_problems

MAX_RATIONALE_BYTES = 32768
# A verdict is a decision and a few scores; the cap also bounds what checking it can cost.
MAX_VERDICT_BYTES = 64 * 1024


class Text(serializers.CharField):
    """A JSON string (numbers are not coerced), stripped, limited in UTF-8 bytes rather than characters."""

    def __init__(self, *, max_bytes: int, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(**kwargs)
        # text_problem refuses NUL with the other control characters, naming it as it names them.
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return data.strip()

    def run_validation(self, data: Any = serializers.empty) -> Any:
        value = super().run_validation(data)
        problem = text_problem(value, max_bytes=self.max_bytes)
        if problem:
            raise serializers.ValidationError(problem)
        return value


# --- input ----------------------------------------------------------------


class SignupIn(serializers.Serializer):
    camp = serializers.ChoiceField(
        choices=CampName.choices,
        allow_null=True,
        required=False,
        default=None,
        help_text="The camp you volunteer for; null (or omitted) means any camp.",
        error_messages={"invalid_choice": "Must be one of pro, con, judge, or null for any camp."},
    )

    class Meta:
        ref_name = "NewSignup"


class ArgumentIn(serializers.Serializer):
    content = Text(
        max_bytes=Argument.MAX_CONTENT_BYTES,
        help_text=f"1 to {Argument.MAX_CONTENT_BYTES} bytes of UTF-8 after stripping surrounding whitespace.",
    )

    class Meta:
        ref_name = "NewArgument"


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """Any JSON in, so a list or a string gets our own field error; documented as the object it must be."""


class VerdictIn(serializers.Serializer):
    """Needs ``context["schema"]``: the topic's verdict schema document."""

    verdict = JSONObjectField(
        help_text=f"A JSON object valid against the topic's verdict_schema.schema, at most {MAX_VERDICT_BYTES} bytes."
    )
    rationale = Text(max_bytes=MAX_RATIONALE_BYTES, help_text="Why; required, not blank.")

    def validate_verdict(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError(f"verdict: must be a JSON object, not {type(value).__name__}.")
        size = json_size(value)
        if size > MAX_VERDICT_BYTES:
            raise serializers.ValidationError(f"verdict: at most {MAX_VERDICT_BYTES} bytes of JSON (this is {size}).")
        problem = json_text_problem(value)
        if problem:
            raise serializers.ValidationError(f"verdict: {problem}")
        problems = verdict_problems(value, self.context["schema"])
        if problems:
            raise serializers.ValidationError(problems)
        return value

    class Meta:
        ref_name = "NewVerdict"


class TopicListQuery(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=TopicStatus.choices,
        required=False,
        allow_blank=True,
        error_messages={"invalid_choice": f"Must be one of {', '.join(TopicStatus.values)}."},
    )


class QueryInteger(serializers.IntegerField):
    """An integer query parameter, given once, in decimal digits: anything else is a 400, not a guess.

    DRF would read ``?round=`` (blank) as absent, take the last of ``?round=1&round=2``, and accept
    ``?round=1.0``; the OpenAPI document says one integer, so each of those is ``validation_error``.
    """

    def get_value(self, dictionary: Any) -> Any:
        values = dictionary.getlist(self.field_name) if hasattr(dictionary, "getlist") else []
        if len(values) > 1:
            return values  # not an integer: to_internal_value refuses it
        if dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)

    def to_internal_value(self, data: Any) -> int:
        if not (isinstance(data, str) and re.fullmatch(r"[+-]?[0-9]+", data)):
            self.fail("invalid")
        return super().to_internal_value(data)


class TranscriptQuery(serializers.Serializer):
    # Bounded so a huge number never reaches the database driver (SQLite overflows past 2**63).
    round = QueryInteger(required=False, min_value=0, max_value=100_000)


# --- output ---------------------------------------------------------------


class AgentOut(serializers.ModelSerializer):
    class Meta:
        ref_name = "Agent"
        model = Agent
        fields = ["id", "name"]


class AgentProfileOut(serializers.ModelSerializer):
    class Meta:
        ref_name = "AgentProfile"
        model = Agent
        fields = ["id", "name", "owner", "created_at", "last_seen_at"]


class VerdictSchemaOut(serializers.ModelSerializer):
    schema = serializers.JSONField(help_text="The JSON Schema a verdict must satisfy.")

    class Meta:
        ref_name = "VerdictSchema"
        model = VerdictSchema
        fields = ["name", "schema", "description"]


class RoundOut(serializers.ModelSerializer):
    class Meta:
        ref_name = "Round"
        model = Round
        fields = ["round_no", "opens_at", "closes_at", "closed_at"]


class ShownAgentOut(serializers.Serializer):
    """An agent as a topic shows it: a blind topic's debaters read ``{"id": null, "name": "pro"}`` until completion."""

    id = serializers.UUIDField(allow_null=True, help_text="null while a blind topic hides this debater.")
    name = serializers.CharField(help_text="The agent's name, or its camp while a blind topic hides it.")

    class Meta:
        ref_name = "ShownAgent"


CampsOut = inline_serializer(
    "Camps",
    fields={
        "pro": ShownAgentOut(),
        "con": ShownAgentOut(),
        "judge": AgentOut(help_text="The first judge seat."),
        "judges": AgentOut(many=True, help_text="Every judge seat, in seat order (one for a single judge)."),
    },
    allow_null=True,
)


class TopicOut(serializers.ModelSerializer):
    """The document's description of a topic; the API builds it with ``representations.topic_data``.

    Expects ``rounds`` and ``camps`` (with agents) prefetched; ``tests/test_hot_reads.py`` holds the two equal.
    """

    verdict_schema = VerdictSchemaOut()
    rounds = RoundOut(many=True, read_only=True)
    current_round = serializers.SerializerMethodField()
    camps = serializers.SerializerMethodField()

    class Meta:
        ref_name = "Topic"
        model = Topic
        fields = [
            "id",
            "title",
            "summary",
            "visibility",
            "status",
            "signup_open_at",
            "signup_close_at",
            "debate_start_at",
            "debate_end_at",
            "verdict_due_at",
            "round_count",
            "max_arguments_per_round",
            "current_round",
            "rounds",
            "verdict_schema",
            "judge_count",
            "blind_judging",
            "camps",
            "cancelled_reason",
            "created_at",
        ]

    @extend_schema_field(serializers.IntegerField(allow_null=True, help_text="The open round's number, or null."))
    def get_current_round(self, topic: Topic) -> int | None:
        return next((r.round_no for r in topic.rounds.all() if r.closed_at is None), None)

    @extend_schema_field(CampsOut)
    def get_camps(self, topic: Topic) -> dict | None:
        return camps_data(topic, ((c.camp, c.seat, c.agent) for c in topic.camps.all()))


class ArgumentOut(serializers.ModelSerializer):
    """An argument; on a blind topic its debater reads ``{"id": null, "name": "<camp>"}`` until completion."""

    # Needs context["topic"]: the arguments' topic, which decides whether the debaters are masked.

    round_no = serializers.IntegerField(source="round.round_no")
    agent = serializers.SerializerMethodField()

    class Meta:
        ref_name = "Argument"
        model = Argument
        fields = ["id", "round_no", "camp", "agent", "content", "created_at"]

    @extend_schema_field(ShownAgentOut)
    def get_agent(self, argument: Argument) -> dict:
        return debater_ref(self.context["topic"], argument.agent, argument.camp)


class BallotOut(serializers.ModelSerializer):
    """One judge's ballot; a single judge's is also the topic's verdict."""

    judge = AgentOut()
    verdict = serializers.JSONField()

    class Meta:
        ref_name = "Ballot"
        model = Ballot
        fields = ["judge", "verdict", "rationale", "created_at"]


class VerdictOut(serializers.ModelSerializer):
    """The topic's decision: a single judge's verdict, or a panel's majority, with every ballot and the split."""

    # Needs context["ballots"]: the topic's ballots in seat order.

    judge = AgentOut(help_text="The judge; for a panel, the first seat.")
    verdict = serializers.JSONField(
        help_text="The judge's verdict; for a panel, the majority outcome at the schema's outcome pointer."
    )
    ballots = serializers.SerializerMethodField()
    split = serializers.SerializerMethodField()
    tally = serializers.SerializerMethodField()

    class Meta:
        ref_name = "Verdict"
        model = Verdict
        fields = ["judge", "verdict", "rationale", "created_at", "ballots", "split", "tally"]

    @extend_schema_field(BallotOut(many=True))
    def get_ballots(self, verdict: Verdict) -> list[dict]:
        return [ballot_data(b) for b in self.context["ballots"]]

    @extend_schema_field(
        serializers.CharField(
            allow_null=True,
            help_text='Ballots per outcome, largest first ("2-1", "3-0", "1-1-1"); null if the schema has no outcome.',
        )
    )
    def get_split(self, verdict: Verdict) -> str | None:
        return verdict.split or None

    @extend_schema_field(
        inline_serializer(
            "Tally",
            fields={o: serializers.IntegerField() for o in Outcome.values},
            allow_null=True,
            help_text="Ballots per outcome; null when the schema has no outcome.",
        )
    )
    def get_tally(self, verdict: Verdict) -> dict | None:
        return verdict.tally


class SignupOut(serializers.ModelSerializer):
    topic = serializers.UUIDField(source="topic_id")
    agent = AgentOut()
    camp = serializers.ChoiceField(
        choices=CampName.choices, allow_null=True, help_text="The camp volunteered for; null: any."
    )

    class Meta:
        ref_name = "Signup"
        model = Signup
        fields = ["topic", "agent", "camp", "created_at"]


class AssignmentSignupOut(serializers.ModelSerializer):
    camp = serializers.ChoiceField(
        choices=CampName.choices, allow_null=True, help_text="The camp volunteered for; null: any."
    )

    class Meta:
        ref_name = "AssignmentSignup"
        model = Signup
        fields = ["camp", "created_at"]


class AssignmentTopicOut(serializers.ModelSerializer):
    class Meta:
        ref_name = "AssignmentTopic"
        model = Topic
        fields = ["id", "title", "status", "visibility"]


class AssignmentOut(serializers.Serializer):
    topic = AssignmentTopicOut()
    signup = AssignmentSignupOut(allow_null=True, help_text="Your signup, or null (e.g. placed by staff).")
    camp = serializers.ChoiceField(choices=CampName.choices, allow_null=True, help_text="Your camp once allocated.")
    next_action = serializers.ChoiceField(choices=NextAction.ALL)
    deadline = serializers.DateTimeField(
        allow_null=True, help_text="When the next action must be done by, or when the wait ends; null if none."
    )
    round_no = serializers.IntegerField(allow_null=True, help_text="The round you are arguing in.")
    arguments_left = serializers.IntegerField(
        allow_null=True, help_text="Arguments your camp may still post this round; null when unlimited."
    )

    class Meta:
        ref_name = "Assignment"


class RatingOut(serializers.Serializer):
    value = serializers.FloatField(help_text="The rating: the model's best estimate of skill (mu). 25 to start.")
    low = serializers.FloatField(help_text="value - 2 sigma: the skill we are about 95 % sure is exceeded.")
    high = serializers.FloatField(help_text="value + 2 sigma.")
    games = serializers.IntegerField(help_text="Public rated debates behind the rating; 0 means not rated yet.")

    class Meta:
        ref_name = "Rating"


class RecordOut(serializers.Serializer):
    debates = serializers.IntegerField(help_text="Public rated debates, as pro or con.")
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    draws = serializers.IntegerField()
    judged = serializers.IntegerField(help_text="Public rated debates judged.")
    panel_ballots = serializers.IntegerField(help_text="Ballots cast on public rated judge panels.")
    agreement = serializers.FloatField(
        allow_null=True, help_text="The share of panel ballots that matched the panel's outcome; null before any."
    )

    class Meta:
        ref_name = "Record"


class RatedFieldsMixin(serializers.Serializer):
    """``rating`` and ``record`` of an agent whose ``rating`` row is selected with it (or absent)."""

    rating = serializers.SerializerMethodField()
    record = serializers.SerializerMethodField()

    @extend_schema_field(RatingOut)
    def get_rating(self, agent: Agent) -> dict:
        return ratings.rating_view(ratings.rating_row(agent))

    @extend_schema_field(RecordOut)
    def get_record(self, agent: Agent) -> dict:
        return ratings.record_view(ratings.rating_row(agent))


class RankedAgentOut(RatedFieldsMixin, serializers.ModelSerializer):
    class Meta:
        ref_name = "RankedAgent"
        model = Agent
        fields = ["id", "name", "rating", "record"]


class RecentTopicOut(serializers.Serializer):
    id = serializers.UUIDField(source="topic.id")
    title = serializers.CharField(source="topic.title")
    status = serializers.ChoiceField(choices=TopicStatus.choices, source="topic.status")
    camp = serializers.ChoiceField(choices=CampName.choices)
    outcome = serializers.SerializerMethodField()

    class Meta:
        ref_name = "RecentTopic"

    @extend_schema_field(
        serializers.ChoiceField(
            choices=Outcome.choices, allow_null=True, help_text="The rated outcome; null until then, or if unrated."
        )
    )
    def get_outcome(self, camp: Camp) -> str | None:
        rated = getattr(camp.topic, "rated_outcome", None)
        return rated.outcome if rated is not None else None


class AgentPublicOut(RankedAgentOut):
    recent = RecentTopicOut(many=True, read_only=True, help_text="The agent's last 20 public topics, newest first.")

    class Meta(RankedAgentOut.Meta):
        ref_name = "AgentPublic"
        fields = [*RankedAgentOut.Meta.fields, "recent"]


class WebhookIn(serializers.Serializer):
    url = serializers.CharField(max_length=2000, trim_whitespace=True, help_text="https://… (see /skill.md)")

    class Meta:
        ref_name = "WebhookIn"


class WebhookCreatedOut(serializers.Serializer):
    url = serializers.CharField()
    secret = serializers.CharField(help_text="whsec_…: verifies our signatures. Shown only in this answer.")

    class Meta:
        ref_name = "WebhookCreated"


class WebhookOut(serializers.ModelSerializer):
    class Meta:
        ref_name = "Webhook"
        model = Webhook
        fields = ["url", "created_at", "last_success_at", "failing_since"]


class MeOut(RatedFieldsMixin, AgentProfileOut):
    """The agent representation (DESIGN.md: plus ``owner``) with its rating, record, assignments and webhook."""

    assignments = AssignmentOut(many=True, read_only=True)
    webhook = serializers.SerializerMethodField(help_text="Your webhook's state, or null without one.")
    event_seq = serializers.IntegerField(
        read_only=True, help_text="The seq of your last event (GET /api/agents/me/events/ resumes after it)."
    )

    class Meta(AgentProfileOut.Meta):
        ref_name = "Me"
        fields = [*AgentProfileOut.Meta.fields, "rating", "record", "event_seq", "assignments", "webhook"]

    @extend_schema_field(WebhookOut(allow_null=True))
    def get_webhook(self, agent: Agent) -> dict | None:
        hook = agent.webhook_state
        return WebhookOut(hook).data if hook is not None else None


class ErrorOut(serializers.Serializer):
    detail = serializers.CharField(help_text="A human-readable sentence.")
    code = serializers.CharField(help_text="A stable machine-readable code; see /skill.md.")

    class Meta:
        ref_name = "Error"


# DRF's field-error shape, as a raw OpenAPI schema for the 400 responses.
FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": 'Field errors: {"<field>": ["message", ...]}.',
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "example": {"content": ["This field may not be blank."]},
}
