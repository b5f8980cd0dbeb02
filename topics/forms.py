"""Admin forms: what staff may change on a topic, and when.

The timeline invariant itself lives in ``Topic.clean`` (and in the database's
check constraints); the forms here add the rules that depend on how far a
topic has got: once a topic is announced, moments that have passed are
history, and nothing may be moved into the past under agents who are
already acting on the schedule. docs/admin.md has the table.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import forms
from django.utils import timezone

from topics.models import Topic, TopicStatus, VerdictSchema
from topics.validation import validate_display_text

TIMELINE_FIELDS = ("signup_open_at", "signup_close_at", "debate_start_at", "debate_end_at", "verdict_due_at")
ROUND_FIELDS = ("round_count", "max_arguments_per_round")
DESCRIPTION_FIELDS = ("title", "summary", "visibility")
# Seats are allocated at signup close: the panel and its blindness are fixed from then on.
JUDGING_FIELDS = ("judge_count", "blind_judging")
TOPIC_FORM_FIELDS = (*DESCRIPTION_FIELDS, "verdict_schema", *TIMELINE_FIELDS, *ROUND_FIELDS, *JUDGING_FIELDS)

# Past ``created`` the topic has been announced with its schema and timeline.
# Each status keeps only the moments that still lie ahead editable; the debate's
# shape (start, end, rounds, limits) is fixed once round 0 has opened, because
# the open round's window was computed from it. Terminal topics are history.
_EDITABLE_BY_STATUS: dict[str, frozenset[str]] = {
    TopicStatus.CREATED: frozenset(TOPIC_FORM_FIELDS),
    TopicStatus.SIGNUP_OPEN: frozenset(
        {
            *DESCRIPTION_FIELDS,
            "signup_close_at",
            "debate_start_at",
            "debate_end_at",
            "verdict_due_at",
            *ROUND_FIELDS,
            *JUDGING_FIELDS,
        }
    ),
    TopicStatus.SIGNUP_CLOSED: frozenset(
        {*DESCRIPTION_FIELDS, "debate_start_at", "debate_end_at", "verdict_due_at", *ROUND_FIELDS}
    ),
    TopicStatus.DEBATING: frozenset({*DESCRIPTION_FIELDS, "verdict_due_at"}),
    TopicStatus.JUDGING: frozenset({*DESCRIPTION_FIELDS, "verdict_due_at"}),
    TopicStatus.COMPLETED: frozenset(),
    TopicStatus.CANCELLED: frozenset(),
}


def editable_topic_fields(topic: Topic | None) -> frozenset[str]:
    """The form fields staff may change on ``topic`` (all of them on a new one)."""
    if topic is None or topic._state.adding:
        return frozenset(TOPIC_FORM_FIELDS)
    return _EDITABLE_BY_STATUS[topic.status]


class TopicAdminForm(forms.ModelForm):
    """Topic form; the admin drops the fields ``editable_topic_fields`` does not allow."""

    class Meta:
        model = Topic
        fields = TOPIC_FORM_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # _post_clean overwrites the instance with the submitted values; keep what is stored.
        self._stored: dict[str, datetime | None] = {name: getattr(self.instance, name) for name in TIMELINE_FIELDS}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # A topic that was never announced can be rescheduled freely (the
        # ticker catches up on moments already past, as create_topic does).
        if self.instance._state.adding or self.instance.status == TopicStatus.CREATED:
            return cleaned
        now = timezone.now()
        for name in TIMELINE_FIELDS:
            if name not in self.fields or name not in self.changed_data or name not in cleaned:
                continue
            stored, new = self._stored[name], cleaned[name]
            if stored is not None and stored <= now:
                self.add_error(name, f"This moment has passed ({stored:%Y-%m-%d %H:%M:%S} UTC); it can no longer move.")
            elif new is not None and new <= now:
                self.add_error(name, "This topic is under way: pick a time in the future.")
        return cleaned


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, so a schema is readable and editable in a textarea."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)

    # json.loads gives up on absurdly deep input with RecursionError, which Django does not catch.

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("Nested too deeply to be a verdict schema.", code="invalid") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)  # redisplayed as typed, like any other invalid JSON


class VerdictSchemaAdminForm(forms.ModelForm):
    # The model field's validator (topics.verdict_schemas: valid JSON Schema, no
    # outside references, no loops, RE2-safe patterns) runs in the model's
    # full_clean and lands on this field as form errors.
    schema = PrettyJSONField(widget=forms.Textarea(attrs={"rows": 20, "cols": 80, "class": "vLargeTextField"}))

    class Meta:
        model = VerdictSchema
        fields = ("name", "schema", "description")


class CancelTopicsForm(forms.Form):
    reason = forms.CharField(
        max_length=1000,
        validators=[validate_display_text],
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Stored on each topic, shown to agents and spectators, and sent with the cancellation announcement.",
    )
