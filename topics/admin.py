"""The staff side: agents and their tokens, verdict schemas, topics and their history.

Status is never edited here. Cancelling goes through ``topics.transitions``
like the ticker and the API do; a topic edit locks the row and writes only the
fields the form allowed, so it cannot overwrite a transition that happened
while the page was open. docs/admin.md describes the workflow.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from dialectic.db import run_in_transaction
from topics import outcomes, ratings, rules, tokens, transitions
from topics.forms import (
    JUDGING_FIELDS,
    ROUND_FIELDS,
    TIMELINE_FIELDS,
    TOPIC_FORM_FIELDS,
    CancelTopicsForm,
    TopicAdminForm,
    VerdictSchemaAdminForm,
    editable_topic_fields,
)
from topics.models import (
    Agent,
    AgentRating,
    AgentToken,
    Argument,
    Ballot,
    Camp,
    Round,
    Signup,
    Topic,
    TopicEvent,
    TopicStatus,
    Verdict,
    VerdictSchema,
)
from topics.verdict_schemas import verdict_schema_problems

logger = logging.getLogger("topics.admin")

admin.site.site_header = "Dialectic administration"
admin.site.site_title = "Dialectic admin"
admin.site.index_title = "Topics, agents and announcements"


def _minute(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "—"


class RetriedWritesMixin:
    """The add, change and delete pages in one retried transaction (``dialectic.db``), where Django opens a plain one.

    A save that loses a race (a ticker on another Galera node moved the
    topic) is redone from the start: the form is validated again against
    the row as the winner left it, instead of the page failing.
    """

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        view = super().changeform_view
        return run_in_transaction(lambda: view(request, *args, **kwargs), label="admin change form")

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        view = super().delete_view
        return run_in_transaction(lambda: view(request, *args, **kwargs), label="admin delete")


class ParentViewPermissionMixin:
    """Whoever may see the parent (topic or agent) may see its history rows."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        opts = self.parent_model._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}") for action in ("view", "change")
        )


class ReadOnlyInlineMixin(ParentViewPermissionMixin):
    """Rows the orchestrator and the API write: staff inspect them and never edit them."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class HistoryInline(ReadOnlyInlineMixin, admin.TabularInline):
    pass


# --- topics -------------------------------------------------------------------


class SignupInline(HistoryInline):
    model = Signup
    fields = readonly_fields = ("agent", "camp", "created_at")
    # Removing a signup is the same as the agent withdrawing, so it is allowed
    # exactly while an agent could withdraw: before the allocator has run.
    can_delete = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Signup]:
        return super().get_queryset(request).select_related("agent")

    def has_delete_permission(self, request: HttpRequest, obj: Topic | None = None) -> bool:
        return (
            obj is not None
            and obj.status in (TopicStatus.CREATED, TopicStatus.SIGNUP_OPEN)
            and request.user.has_perm("topics.change_topic")
        )


class CampInline(HistoryInline):
    model = Camp
    fields = readonly_fields = ("camp", "seat", "agent")
    verbose_name_plural = "camps and seats"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Camp]:
        return super().get_queryset(request).select_related("agent")


class RoundInline(HistoryInline):
    model = Round
    fields = readonly_fields = ("round_no", "opens_at", "closes_at", "closed_at")


class ArgumentInline(HistoryInline):
    model = Argument
    fields = readonly_fields = ("round_no", "camp", "agent", "content", "created_at")
    verbose_name_plural = "transcript"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Argument]:
        return super().get_queryset(request).select_related("round", "agent")

    @admin.display(description="round")
    def round_no(self, argument: Argument) -> int:
        return argument.round.round_no


class VerdictInline(ReadOnlyInlineMixin, admin.StackedInline):
    model = Verdict
    fields = readonly_fields = ("judge", "verdict", "rationale", "split", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Verdict]:
        return super().get_queryset(request).select_related("judge")


class BallotInline(HistoryInline):
    model = Ballot
    fields = readonly_fields = ("seat_no", "judge", "verdict", "rationale", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Ballot]:
        return super().get_queryset(request).select_related("judge", "seat")

    @admin.display(description="seat")
    def seat_no(self, ballot: Ballot) -> int:
        return ballot.seat.seat


class TopicEventInline(HistoryInline):
    model = TopicEvent
    fields = readonly_fields = ("seq", "kind", "data", "created_at")
    verbose_name_plural = "event log"
    ordering = ("seq",)


STATE_FIELDS = ("status", "cancelled_reason", "id", "created_at", "event_seq")


@admin.register(Topic)
class TopicAdmin(RetriedWritesMixin, admin.ModelAdmin):
    form = TopicAdminForm
    list_display = (
        "title",
        "status",
        "visibility",
        "timeline",
        "round_count",
        "judge_count",
        "verdict_schema",
        "created_at",
    )
    list_filter = ("status", "visibility", "verdict_schema", "judge_count", "blind_judging")
    search_fields = ("title", "summary")
    search_help_text = "Title or summary words, or a topic id."
    list_select_related = ("verdict_schema",)
    actions = ["cancel_with_reason"]
    inlines = [SignupInline, CampInline, RoundInline, ArgumentInline, BallotInline, VerdictInline, TopicEventInline]

    def get_inlines(self, request: HttpRequest, obj: Topic | None = None) -> list[type[admin.options.InlineModelAdmin]]:
        # A topic being added has no history yet.
        return self.inlines if obj is not None else []

    def get_fieldsets(self, request: HttpRequest, obj: Topic | None = None):
        fieldsets = [
            (None, {"fields": ("title", "summary", "visibility", "verdict_schema")}),
            (
                "Timeline (UTC)",
                {
                    "fields": TIMELINE_FIELDS,
                    "description": "signup opens ≤ signup closes ≤ debate starts < debate ends < verdict due. "
                    "Once signup has opened, only moments still ahead can move, and only to the future.",
                },
            ),
            ("Rounds", {"fields": ROUND_FIELDS}),
            (
                "Judging",
                {
                    "fields": JUDGING_FIELDS,
                    "description": "A panel (3, 5 or 7) is decided by the majority of its ballots and needs a schema "
                    "with an outcome. Blind judging hides the debaters outside the admin until completion.",
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("State (changed only by the orchestrator)", {"fields": STATE_FIELDS}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Topic | None = None) -> tuple[str, ...]:
        editable = editable_topic_fields(obj)
        return (*STATE_FIELDS, *(name for name in TOPIC_FORM_FIELDS if name not in editable))

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # The create_topic command's defaults, opening at the next whole minute: a form takes a
        # while to fill in, and a moment already past by the time it is saved would be refused.
        initial = super().get_changeform_initial_data(request)
        opens = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
        moments = {name: value for name, value in rules.timeline(opens_at=opens).items() if value is not None}
        return {**moments, "round_count": rules.DEFAULT_ROUNDS, **initial}

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Topic | None:
        topic = super().get_object(request, object_id, from_field)
        # A save runs in the admin's transaction: hold the row lock from the
        # read to the write, so the form is validated against the status the
        # ticker cannot change underneath it.
        if topic is not None and request.method == "POST" and connection.in_atomic_block:
            topic = transitions.topic_lock(topic.pk)
        return topic

    def save_model(self, request: HttpRequest, obj: Topic, form: TopicAdminForm, change: bool) -> None:
        if not change:
            obj.save()
            return
        # Only what the form changed: status, cancelled_reason and event_seq belong to the transitions.
        update_fields = [name for name in form.changed_data if name in TOPIC_FORM_FIELDS]
        if update_fields:
            obj.save(update_fields=update_fields)

    def has_change_permission(self, request: HttpRequest, obj: Topic | None = None) -> bool:
        # Finished topics are history: their pages are read-only.
        if obj is not None and rules.is_finished(obj.status):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Topic | None = None) -> bool:
        # Only a topic nobody has heard of yet; afterwards cancel it and keep the record.
        # (None is the changelist's bulk delete, which is therefore not offered.)
        if obj is None or obj.status != TopicStatus.CREATED:
            return False
        return super().has_delete_permission(request, obj)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Topic], search_term: str):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            topic_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        # Logs and the API name topics by id; let staff paste one.
        return results | queryset.filter(pk=topic_id), may_have_duplicates

    @admin.display(description="timeline (UTC)")
    def timeline(self, topic: Topic) -> str:
        parts = [
            f"signup {_minute(topic.signup_open_at)} → {_minute(topic.signup_close_at)}",
            f"debate {_minute(topic.debate_start_at)} → {_minute(topic.debate_end_at)}",
        ]
        if topic.verdict_due_at:
            parts.append(f"verdict by {_minute(topic.verdict_due_at)}")
        return " · ".join(parts)

    @admin.action(description="Cancel selected topics with a reason…", permissions=["change"])
    def cancel_with_reason(self, request: HttpRequest, queryset: QuerySet[Topic]) -> TemplateResponse | None:
        form = CancelTopicsForm(request.POST if "confirm_cancel" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._cancel_each(request, list(queryset.values_list("pk", flat=True)), form.cleaned_data["reason"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel topics",
            "opts": self.opts,
            "form": form,
            "topics": queryset.order_by("title"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/topics/topic/cancel_selected_confirmation.html", context)

    def _cancel_each(self, request: HttpRequest, topic_ids: list[uuid.UUID], reason: str) -> None:
        # One short transaction per topic with its row lock, like the ticker: a
        # topic the ticker holds is waited for, and one failure stops no other.
        cancelled: list[Topic] = []
        finished: list[Topic] = []
        for topic_id in topic_ids:

            def cancel(topic_id: uuid.UUID = topic_id) -> tuple[str, Topic | None]:
                topic = transitions.topic_lock(topic_id)
                if topic is None:
                    return "missing", None
                if rules.is_finished(topic.status):
                    return "finished", topic
                transitions.topic_cancel(topic, reason=reason, now=timezone.now())
                self.log_change(request, topic, f"Cancelled: {reason}")
                return "cancelled", topic

            try:
                outcome, topic = run_in_transaction(cancel, durable=True, label="admin cancel")
            except (transitions.TransitionError, transitions.StaleTopic) as exc:
                logger.warning("admin cancel of topic %s failed: %s", topic_id, exc)
                self.message_user(request, f"Could not cancel topic {topic_id}: {exc}", messages.ERROR)
                continue
            if outcome == "cancelled":
                cancelled.append(topic)
            elif outcome == "finished":
                finished.append(topic)
        if cancelled:
            titles = ", ".join(f"“{t.title}”" for t in cancelled)
            self.message_user(request, f"Cancelled {len(cancelled)} topic(s): {titles}.", messages.SUCCESS)
        if finished:
            listed = ", ".join(f"“{t.title}” ({t.get_status_display().lower()})" for t in finished)
            self.message_user(
                request, f"{len(finished)} topic(s) already finished, left as they were: {listed}.", messages.WARNING
            )


# --- verdict schemas ------------------------------------------------------------


@admin.register(VerdictSchema)
class VerdictSchemaAdmin(RetriedWritesMixin, admin.ModelAdmin):
    form = VerdictSchemaAdminForm
    list_display = ("name", "description", "rated_by", "topic_count")
    search_fields = ("name", "description")

    def get_queryset(self, request: HttpRequest) -> QuerySet[VerdictSchema]:
        return super().get_queryset(request).annotate(topic_count=Count("topics"))

    @staticmethod
    def is_frozen(schema: VerdictSchema | None) -> bool:
        # Announced topics told agents this schema and verdicts were checked against it.
        return schema is not None and schema.topics.exclude(status=TopicStatus.CREATED).exists()

    def get_fields(self, request: HttpRequest, obj: VerdictSchema | None = None) -> tuple[str, ...]:
        if self.is_frozen(obj):
            return ("name", "schema_document", "description")
        return ("name", "schema", "description")

    def get_readonly_fields(self, request: HttpRequest, obj: VerdictSchema | None = None) -> tuple[str, ...]:
        # "schema" too, so the form drops its declared field; the page shows schema_document instead.
        return ("name", "schema", "schema_document") if self.is_frozen(obj) else ()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> Any:
        # A schema stored before the save-time rules may break them. Verdicts against it are still
        # checked safely (never fetching, never looping into a 500), but staff should replace it.
        schema = self.get_object(request, object_id) if request.method == "GET" else None
        if schema is not None and (problems := verdict_schema_problems(schema.schema)):
            self.message_user(
                request,
                "This schema would be refused if saved today: " + " ".join(problems),
                messages.WARNING,
            )
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="topics", ordering="topic_count")
    def topic_count(self, schema: VerdictSchema) -> int:
        return schema.topic_count

    @admin.display(description="rated (x-outcome)")
    def rated_by(self, schema: VerdictSchema) -> str:
        # Topics with this schema update ratings only when it names its outcome (docs/ratings.md).
        return outcomes.outcome_pointer(schema.schema) or "not rated"

    @admin.display(description="schema (frozen: announced topics use it; add a new schema to change it)")
    def schema_document(self, schema: VerdictSchema) -> str:
        return format_html("<pre>{}</pre>", json.dumps(schema.schema, ensure_ascii=False, indent=2))


# --- agents ---------------------------------------------------------------------


class AgentTokenInline(HistoryInline):
    """Tokens are issued and revoked by the agent actions; the digest is never shown."""

    model = AgentToken
    fields = readonly_fields = ("token", "created_at", "last_used_at", "revoked_at")

    @admin.display(description="token")
    def token(self, token: AgentToken) -> str:
        return str(token)


@admin.register(Agent)
class AgentAdmin(RetriedWritesMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "is_active", "live_tokens", "created_at", "last_seen_at")
    list_filter = ("is_active", "owner")
    search_fields = ("name", "owner", "=tokens__prefix")
    search_help_text = "Name, owner, or a token prefix (the part after dlc_)."
    readonly_fields = ("id", "created_at", "last_seen_at")
    inlines = [AgentTokenInline]
    actions = ["issue_token", "revoke_tokens"]
    change_form_template = "admin/topics/agent/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return (
            super()
            .get_queryset(request)
            .annotate(live_token_count=Count("tokens", filter=Q(tokens__revoked_at__isnull=True)))
        )

    def get_fields(self, request: HttpRequest, obj: Agent | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("name", "owner", "is_active")
        return ("name", "owner", "is_active", "id", "created_at", "last_seen_at")

    @admin.display(description="live tokens", ordering="live_token_count")
    def live_tokens(self, agent: Agent) -> int:
        return agent.live_token_count

    @admin.action(description="Issue a token (shown once)", permissions=["change"])
    def issue_token(self, request: HttpRequest, queryset: QuerySet[Agent]) -> TemplateResponse | None:
        issued: list[tuple[Agent, str]] = []
        inactive: list[str] = []
        for agent in queryset.order_by("name"):
            if not agent.is_active:
                inactive.append(agent.name)
                continue

            def issue(agent: Agent = agent) -> str:
                raw = tokens.token_issue(agent=agent)
                prefix, _secret = tokens.parse_token(raw)
                # The audit trail names the prefix only: the secret exists in this response and nowhere else.
                self.log_change(request, agent, f"Issued token {tokens.TOKEN_PREFIX}_{prefix}_…")
                return raw

            issued.append((agent, run_in_transaction(issue, label="admin issue token")))
        if inactive:
            self.message_user(
                request,
                f"No token issued for inactive agent(s) {', '.join(inactive)}: it would not authenticate. "
                "Activate them first.",
                messages.WARNING,
            )
        if not issued:
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "New agent tokens",
            "opts": self.opts,
            "issued": issued,
            "media": self.media,
        }
        # Admin views already send never-cache headers; the page is the only copy of the secret.
        return TemplateResponse(request, "admin/topics/agent/issued_tokens.html", context)

    @admin.action(description="Revoke all tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        revoked = 0
        agents = list(queryset)
        for agent in agents:

            def revoke(agent: Agent = agent) -> int:
                count = tokens.tokens_revoke(agent=agent)
                if count:
                    self.log_change(request, agent, f"Revoked {count} token(s)")
                return count

            revoked += run_in_transaction(revoke, label="admin revoke tokens")
        self.message_user(request, f"Revoked {revoked} token(s) of {len(agents)} agent(s).", messages.SUCCESS)


# --- ratings --------------------------------------------------------------------------


@admin.register(AgentRating)
class AgentRatingAdmin(admin.ModelAdmin):
    """Read-only: ratings change only when a rated topic completes, or by the rebuild (docs/ratings.md)."""

    list_display = (
        "agent",
        "value",
        "low",
        "high",
        "games",
        "wins",
        "losses",
        "draws",
        "judged",
        "agreement",
        "updated_at",
    )
    list_select_related = ("agent",)
    search_fields = ("agent__name",)
    fields = readonly_fields = list_display
    actions = ["rebuild_ratings"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AgentRating | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AgentRating | None = None) -> bool:
        return False

    def has_rebuild_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and request.user.has_perm("topics.rebuild_ratings")

    @admin.display(description="rating", ordering="mu")
    def value(self, row: AgentRating) -> float:
        return ratings.rating_view(row)["value"]

    @admin.display(description="low (mu - 2 sigma)", ordering="low")
    def low(self, row: AgentRating) -> float:
        return ratings.rating_view(row)["low"]

    @admin.display(description="panel agreement")
    def agreement(self, row: AgentRating) -> str:
        shown = ratings.record_view(row)
        return "—" if shown["agreement"] is None else f"{shown['agreement']:.0%} of {shown['panel_ballots']}"

    @admin.display(description="high (mu + 2 sigma)")
    def high(self, row: AgentRating) -> float:
        return ratings.rating_view(row)["high"]

    @admin.action(
        description="Rebuild every rating from the outcome log (all of them, whatever is selected)",
        permissions=["rebuild"],
    )
    def rebuild_ratings(self, request: HttpRequest, queryset: QuerySet[AgentRating]) -> None:
        # The same call as manage.py rebuild_ratings: safe while completions happen (docs/ratings.md).
        report = ratings.ratings_rebuild()
        logger.info("ratings rebuilt by %s: %s", request.user, report)
        self.message_user(
            request,
            f"Replayed {report.outcomes} outcome(s) for {report.agents} agent(s); "
            f"{report.changed} rating row(s) differed from the replay and were rewritten.",
            messages.SUCCESS,
        )
