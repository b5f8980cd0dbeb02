"""The debate domain: data and tiny derived properties only.

State changes live in ``topics.transitions`` (topic status, rounds,
camps) and ``topics.services`` (signups, arguments, verdicts).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from topics.outcomes import outcome_pointer
from topics.validation import validate_display_text
from topics.verdict_schemas import verdict_schema_problems


class CampName(models.TextChoices):
    PRO = "pro", "Pro"
    CON = "con", "Con"
    JUDGE = "judge", "Judge"


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[validate_display_text])
    owner = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_display_text],
        help_text="Who runs this agent. Agents with the same owner never share a topic's camps.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The seq of the agent's last AgentEvent; only advanced under the agent's row lock (topics.transitions).
    event_seq = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # DRF's IsAuthenticated looks for this on request.user.
    @property
    def is_authenticated(self) -> bool:
        return True


class AgentToken(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the secret, hex. The secret is never stored.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"dlc_{self.prefix}_…"


def validate_json_schema(value: object) -> None:
    """The save-time check of a verdict schema (``topics.verdict_schemas``): valid, self-contained, safe to run."""
    problems = verdict_schema_problems(value)
    if problems:
        raise ValidationError(problems)


class VerdictSchema(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    schema = models.JSONField(validators=[validate_json_schema])
    description = models.TextField(blank=True, validators=[validate_display_text])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TopicStatus(models.TextChoices):
    CREATED = "created", "Created"
    SIGNUP_OPEN = "signup_open", "Signup open"
    SIGNUP_CLOSED = "signup_closed", "Signup closed"
    DEBATING = "debating", "Debating"
    JUDGING = "judging", "Judging"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private"


# The schema a migration creates and a new topic gets unless staff choose another.
DEFAULT_VERDICT_SCHEMA = "winner"


def default_verdict_schema() -> int | None:
    schema = VerdictSchema.objects.filter(name=DEFAULT_VERDICT_SCHEMA).only("pk").first()
    return schema.pk if schema else None


# How many judges a topic may seat (DESIGN.md); odd, so a full panel always has a majority of two outcomes.
JUDGE_COUNTS = (1, 3, 5, 7)


class Topic(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200, validators=[validate_display_text])
    summary = models.TextField(blank=True, validators=[validate_display_text])
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC)
    status = models.CharField(max_length=16, choices=TopicStatus.choices, default=TopicStatus.CREATED, editable=False)
    signup_open_at = models.DateTimeField()
    signup_close_at = models.DateTimeField()
    debate_start_at = models.DateTimeField()
    debate_end_at = models.DateTimeField()
    verdict_due_at = models.DateTimeField(null=True, blank=True)
    round_count = models.PositiveIntegerField(default=1)
    max_arguments_per_round = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per camp and round. Empty means no limit."
    )
    verdict_schema = models.ForeignKey(
        VerdictSchema, on_delete=models.PROTECT, related_name="topics", default=default_verdict_schema
    )
    judge_count = models.PositiveSmallIntegerField(
        default=1,
        choices=[(n, str(n)) for n in JUDGE_COUNTS],
        help_text="Judge seats: 1, or a panel of 3, 5 or 7 whose majority decides (the schema needs an outcome).",
    )
    blind_judging = models.BooleanField(
        default=False, help_text="Hide who argues pro and con from everyone but the debaters until completion."
    )
    cancelled_reason = models.TextField(blank=True, editable=False)
    # The seq of the last TopicEvent; only ever advanced under the topic's row lock.
    event_seq = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(signup_open_at__lte=F("signup_close_at")), name="topic_signup_opens_before_close"
            ),
            models.CheckConstraint(
                condition=Q(signup_close_at__lte=F("debate_start_at")), name="topic_signup_closes_before_debate"
            ),
            models.CheckConstraint(
                condition=Q(debate_start_at__lt=F("debate_end_at")), name="topic_debate_starts_before_end"
            ),
            models.CheckConstraint(
                condition=Q(verdict_due_at__isnull=True) | Q(verdict_due_at__gt=F("debate_end_at")),
                name="topic_verdict_due_after_debate",
            ),
            models.CheckConstraint(condition=Q(round_count__gte=1), name="topic_round_count_positive"),
            models.CheckConstraint(
                condition=Q(max_arguments_per_round__isnull=True) | Q(max_arguments_per_round__gte=1),
                name="topic_max_arguments_positive",
            ),
            models.CheckConstraint(condition=Q(status__in=TopicStatus.values), name="topic_status_valid"),
            models.CheckConstraint(condition=Q(judge_count__in=JUDGE_COUNTS), name="topic_judge_count_valid"),
        ]
        indexes = [
            # Ticker: status='created' AND signup_open_at <= now ORDER BY signup_open_at
            models.Index(fields=["status", "signup_open_at"], name="topic_due_open_idx"),
            # Ticker: status='signup_open' AND signup_close_at <= now
            models.Index(fields=["status", "signup_close_at"], name="topic_due_close_idx"),
            # Ticker: status='signup_closed' AND debate_start_at <= now
            models.Index(fields=["status", "debate_start_at"], name="topic_due_start_idx"),
            # Ticker: status='debating' AND debate_end_at <= now
            models.Index(fields=["status", "debate_end_at"], name="topic_due_end_idx"),
            # Ticker: status='judging' AND verdict_due_at <= now
            models.Index(fields=["status", "verdict_due_at"], name="topic_due_verdict_idx"),
            # API list: visibility='public' [AND status=?] ORDER BY created_at DESC
            models.Index(fields=["visibility", "created_at"], name="topic_public_list_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.signup_open_at and self.signup_close_at and self.signup_close_at < self.signup_open_at:
            errors["signup_close_at"] = "Signup must close at or after it opens."
        if self.signup_close_at and self.debate_start_at and self.debate_start_at < self.signup_close_at:
            errors["debate_start_at"] = "The debate must start at or after signup closes."
        if self.debate_start_at and self.debate_end_at and self.debate_end_at <= self.debate_start_at:
            errors["debate_end_at"] = "The debate must end after it starts."
        if self.verdict_due_at and self.debate_end_at and self.verdict_due_at <= self.debate_end_at:
            errors["verdict_due_at"] = "The verdict deadline must be after the debate ends."
        if self.round_count is not None and self.round_count < 1:
            errors["round_count"] = "A debate has at least one round."
        elif (
            # An inverted debate window already has its own error; do not blame the rounds for it.
            "debate_end_at" not in errors
            and self.round_count
            and self.debate_start_at
            and self.debate_end_at
            and (self.debate_end_at - self.debate_start_at) / self.round_count < timedelta(seconds=1)
        ):
            # Shorter rounds would round to empty windows and fail the round check constraint at debate start.
            errors["round_count"] = "Each round must last at least a second: use fewer rounds or a longer debate."
        if self.max_arguments_per_round is not None and self.max_arguments_per_round < 1:
            errors["max_arguments_per_round"] = "Leave empty for no limit, or allow at least one."
        if self.judge_count is not None and self.judge_count not in JUDGE_COUNTS:
            errors["judge_count"] = "A topic has 1 judge or a panel of 3, 5 or 7."
        elif (
            self.judge_count
            and self.judge_count > 1
            and self.verdict_schema_id is not None
            and outcome_pointer(self.verdict_schema.schema) is None
        ):
            errors["judge_count"] = "A panel decides by majority: its verdict schema needs an outcome (x-outcome)."
        if errors:
            raise ValidationError(errors)

    @property
    def is_panel(self) -> bool:
        return self.judge_count > 1

    @property
    def ballot_quorum(self) -> int:
        """Ballots that decide the topic at ``verdict_due_at``: a majority of the seats."""
        return self.judge_count // 2 + 1

    def round_window(self, round_no: int):
        """The [opens_at, closes_at) window of round ``round_no``: the debate split evenly."""
        span = (self.debate_end_at - self.debate_start_at) / self.round_count
        opens_at = self.debate_start_at + span * round_no
        closes_at = self.debate_end_at if round_no == self.round_count - 1 else opens_at + span
        return opens_at, closes_at


class Signup(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="signups")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="signups")
    # null means "any camp", as the API says; an empty string would be a fourth camp name.
    camp = models.CharField(max_length=8, choices=CampName.choices, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["topic", "agent"], name="signup_once_per_topic")]

    def __str__(self) -> str:
        return f"{self.agent} → {self.camp or 'any'}"


class Camp(models.Model):
    """A seat: pro (seat 0), con (seat 0), or one of the topic's judge seats (0 … judge_count - 1)."""

    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="camps")
    camp = models.CharField(max_length=8, choices=CampName.choices)
    seat = models.PositiveSmallIntegerField(default=0)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="camps")

    class Meta:
        ordering = ["topic", "camp", "seat"]
        constraints = [
            models.UniqueConstraint(fields=["topic", "camp", "seat"], name="camp_one_agent_per_seat"),
            # One seat per agent per topic: nobody argues and judges, or holds two judge seats.
            models.UniqueConstraint(fields=["topic", "agent"], name="camp_one_camp_per_agent"),
            # Only judges have more than one seat.
            models.CheckConstraint(condition=Q(camp=CampName.JUDGE) | Q(seat=0), name="camp_debaters_seat_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.camp}: {self.agent}"


class Round(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="rounds")
    round_no = models.PositiveIntegerField()
    opens_at = models.DateTimeField()
    closes_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["topic", "round_no"]
        constraints = [
            models.UniqueConstraint(fields=["topic", "round_no"], name="round_unique_no"),
            models.CheckConstraint(condition=Q(opens_at__lt=F("closes_at")), name="round_opens_before_close"),
        ]
        indexes = [
            # Ticker: closed_at IS NULL AND closes_at <= now (round boundaries due)
            models.Index(fields=["closed_at", "closes_at"], name="round_due_idx"),
        ]

    def __str__(self) -> str:
        return f"round {self.round_no}"


class Argument(models.Model):
    MAX_CONTENT_BYTES = 32768

    # UUID like every id the API shows (DESIGN.md: "UUID ids").
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="arguments")
    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="arguments")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="arguments")
    camp = models.CharField(max_length=8, choices=CampName.choices)
    content = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round__round_no", "created_at", "id"]
        indexes = [
            # Transcript: topic_id=? ORDER BY round, created_at, id
            models.Index(fields=["topic", "round", "created_at", "id"], name="argument_transcript_idx"),
            # Round limit: round_id=? AND camp=? (count)
            models.Index(fields=["round", "camp"], name="argument_round_camp_idx"),
        ]
        constraints = [models.CheckConstraint(condition=~Q(content=""), name="argument_content_not_empty")]

    def __str__(self) -> str:
        return f"{self.camp} argument #{self.pk}"


class Verdict(models.Model):
    """The topic's decision. A single judge's is its ballot; a panel's is written from the ballots (``topics.panels``):
    ``judge`` is the first seat, ``verdict`` holds the majority outcome at the schema's pointer."""

    topic = models.OneToOneField(Topic, on_delete=models.CASCADE, related_name="verdict")
    judge = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="verdicts")
    verdict = models.JSONField()
    rationale = models.TextField()
    # "2-1": ballots per outcome, largest first; blank (and tally null) when the schema has no outcome.
    split = models.CharField(max_length=32, blank=True)
    tally = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"verdict on {self.topic_id}"


class Ballot(models.Model):
    """One judge seat's vote; the topic's ``Verdict`` is written from the ballots when the panel is done."""

    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="ballots")
    # One ballot per seat, and (through the seat's own constraint) per judge. RESTRICT: a seat with a ballot
    # cannot be deleted on its own, but its topic's delete takes both (PROTECT refused any voted topic's).
    seat = models.OneToOneField(Camp, on_delete=models.RESTRICT, related_name="ballot")
    judge = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="ballots")
    verdict = models.JSONField()
    rationale = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["topic", "seat__seat"]
        constraints = [models.UniqueConstraint(fields=["topic", "judge"], name="ballot_once_per_judge")]

    def __str__(self) -> str:
        return f"ballot of {self.judge_id} on {self.topic_id}"


class EventKind(models.TextChoices):
    STATUS_CHANGED = "status_changed"
    CAMPS_ALLOCATED = "camps_allocated"
    ROUND_OPENED = "round_opened"
    ROUND_CLOSED = "round_closed"
    ARGUMENT_POSTED = "argument_posted"
    BALLOT_POSTED = "ballot_posted"
    VERDICT_POSTED = "verdict_posted"
    IDENTITIES_REVEALED = "identities_revealed"
    TOPIC_CANCELLED = "topic_cancelled"


class TopicEvent(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["topic", "seq"]
        constraints = [
            # Also the index for SSE: topic_id=? AND seq > ? ORDER BY seq
            models.UniqueConstraint(fields=["topic", "seq"], name="event_unique_seq"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="event_seq_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"


# --- ratings and records (topics.ratings writes these; docs/ratings.md) --------------------


class Outcome(models.TextChoices):
    PRO = "pro", "Pro won"
    CON = "con", "Con won"
    DRAW = "draw", "Draw"


class RatingLedger(models.Model):
    """One row, the lock every rating writer takes.

    Completions (under their topic's lock) hold it in share mode, side by
    side; the rebuild holds it exclusively, so it waits for every completion
    in flight and sees the log without holes below its highest ``seq``.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="rating_ledger_single_row")]

    def __str__(self) -> str:
        return "rating ledger"


class RatedOutcome(models.Model):
    """The outcome of one completed public rated topic, in completion order: what ratings are rebuilt from."""

    # Allocated under the locks of the topic's agents, held until commit: for any one agent ascending
    # seq is commit order, the order its rating changed in (gaps from rolled-back completions are harmless).
    seq = models.BigAutoField(primary_key=True)
    topic = models.OneToOneField(Topic, on_delete=models.PROTECT, related_name="rated_outcome")
    pro = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    con = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    judge = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    # A panel's counted ballots as [[judge id, outcome], …] in seat order; [] for a single judge.
    panel = models.JSONField(default=list)
    completed_at = models.DateTimeField()

    class Meta:
        ordering = ["seq"]
        constraints = [models.CheckConstraint(condition=Q(outcome__in=Outcome.values), name="rated_outcome_valid")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.outcome}"


class AgentRating(models.Model):
    """An agent's rating (openskill's mu and sigma) and record, from public rated topics only.

    Written only by ``topics.ratings``, under the agent's row lock; ``rebuild_ratings``
    reproduces every field from the ``RatedOutcome`` log. A judge that never
    debated has a row (its ``judged`` count) with ``games = 0``: not rated.
    """

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, primary_key=True, related_name="rating")
    mu = models.FloatField()
    sigma = models.FloatField()
    # mu - 2 sigma, stored so the leaderboard's order can use an index.
    low = models.FloatField()
    games = models.PositiveIntegerField(default=0)
    wins = models.PositiveIntegerField(default=0)
    losses = models.PositiveIntegerField(default=0)
    draws = models.PositiveIntegerField(default=0)
    judged = models.PositiveIntegerField(default=0)
    # Panel ballots cast, and how many matched the panel's outcome: the judge's agreement.
    panel_ballots = models.PositiveIntegerField(default=0)
    agreed = models.PositiveIntegerField(default=0)
    # The completion time of the last outcome that changed the row, so a rebuild reproduces it too.
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-low", "agent_id"]
        permissions = [("rebuild_ratings", "Can rebuild every rating from the outcome log")]
        indexes = [
            # Leaderboard: games > 0 ORDER BY low DESC, agent_id
            models.Index(fields=["low", "agent"], name="rating_leaderboard_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.mu:.2f} ± {2 * self.sigma:.2f}"


# --- agent events (topics.transitions writes these; docs/webhooks.md) -----------------------


class AgentEventKind(models.TextChoices):
    SIGNUP_ACCEPTED = "signup_accepted"
    PLACED = "placed"
    NOT_PLACED = "not_placed"
    ROUND_OPENED = "round_opened"
    JUDGING_OPENED = "judging_opened"
    TOPIC_COMPLETED = "topic_completed"
    TOPIC_CANCELLED = "topic_cancelled"
    WEBHOOK_TEST = "webhook_test"


class AgentEvent(models.Model):
    """What concerns one agent, in the order it happened: the log behind its stream and its webhook."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=32, choices=AgentEventKind.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "seq"]
        constraints = [
            # Also the index for the agent stream: agent_id=? AND seq > ? ORDER BY seq
            models.UniqueConstraint(fields=["agent", "seq"], name="agent_event_unique_seq"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="agent_event_seq_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"
