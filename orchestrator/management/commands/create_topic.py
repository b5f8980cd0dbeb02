"""``python manage.py create_topic --title T ...``: schedule a topic relative to now; prints its id last."""

from __future__ import annotations

import argparse
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dialectic.config import parse_duration
from topics.models import Topic, VerdictSchema, Visibility

# option → default, as DESIGN.md's "Operator commands" gives them.
DURATIONS = {"opens_in": "0s", "signup_for": "10m", "gap": "0s", "debate_for": "30m"}


def round_count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a debate has at least one round")
    return value


class Command(BaseCommand):
    help = (
        "Schedule a debate topic relative to now. Signup opens after --opens-in and stays open for --signup-for; "
        "the debate starts --gap after signup closes and lasts --debate-for, split into --rounds equal rounds; "
        "--verdict-within sets the verdict deadline after the debate ends. Durations: 90s, 10m, 1h30m, 15. "
        "Prints the new topic's id on the last line."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--title", required=True)
        parser.add_argument("--summary", default="")
        parser.add_argument("--visibility", choices=Visibility.values, default=Visibility.PUBLIC)
        parser.add_argument("--opens-in", metavar="DURATION", default=DURATIONS["opens_in"])
        parser.add_argument("--signup-for", metavar="DURATION", default=DURATIONS["signup_for"])
        parser.add_argument("--gap", metavar="DURATION", default=DURATIONS["gap"])
        parser.add_argument("--debate-for", metavar="DURATION", default=DURATIONS["debate_for"])
        parser.add_argument("--rounds", type=round_count, metavar="N", default=1)
        parser.add_argument("--verdict-within", metavar="DURATION", help="Default: no verdict deadline.")
        parser.add_argument("--schema", metavar="NAME", default="winner", help="Verdict schema name (default: winner).")

    def handle(self, *args: object, **options: object) -> None:
        opens_in, signup_for, gap, debate_for = (self._duration(options, name) for name in DURATIONS)
        verdict_within = self._duration(options, "verdict_within") if options["verdict_within"] is not None else None
        schema = VerdictSchema.objects.filter(name=options["schema"]).first()
        if schema is None:
            known = ", ".join(VerdictSchema.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"--schema: no verdict schema named {options['schema']!r} (known: {known})")

        signup_open_at = timezone.now() + opens_in
        signup_close_at = signup_open_at + signup_for
        debate_start_at = signup_close_at + gap
        debate_end_at = debate_start_at + debate_for
        topic = Topic(
            title=str(options["title"]).strip(),
            summary=str(options["summary"]).strip(),
            visibility=options["visibility"],
            signup_open_at=signup_open_at,
            signup_close_at=signup_close_at,
            debate_start_at=debate_start_at,
            debate_end_at=debate_end_at,
            verdict_due_at=debate_end_at + verdict_within if verdict_within is not None else None,
            round_count=options["rounds"],
            verdict_schema=schema,
        )
        try:
            topic.full_clean()
        except ValidationError as exc:
            raise CommandError(_describe(exc)) from None
        topic.save()

        when = "%Y-%m-%d %H:%M:%S UTC"
        self.stdout.write(
            f"Scheduled {topic.title!r} ({topic.visibility}, schema {schema.name}): "
            f"signup {signup_open_at:{when}} → {signup_close_at:{when}}, "
            f"debate {debate_start_at:{when}} → {debate_end_at:{when}} in {topic.round_count} round(s), "
            f"verdict due {f'{topic.verdict_due_at:{when}}' if topic.verdict_due_at else 'whenever'}"
        )
        self.stdout.write(str(topic.id))

    @staticmethod
    def _duration(options: dict, name: str) -> timedelta:
        raw = options[name]
        try:
            return parse_duration(str(raw))
        except ValueError as exc:
            raise CommandError(f"--{name.replace('_', '-')}: {exc}") from None


# The model's field names, in the words of this command's options.
FIELD_OPTIONS = {
    "title": "--title",
    "summary": "--summary",
    "signup_close_at": "--signup-for",
    "debate_start_at": "--gap",
    "debate_end_at": "--debate-for",
    "verdict_due_at": "--verdict-within",
    "round_count": "--rounds",
}


def _describe(exc: ValidationError) -> str:
    parts = []
    for field, messages in exc.message_dict.items():
        label = FIELD_OPTIONS.get(field, field)
        parts.extend(f"{label}: {message}" for message in messages)
    return "; ".join(parts)
