"""``python manage.py create_topic --title T ...``: schedule a topic relative to now; prints its id last."""

from __future__ import annotations

import argparse
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dialectic.config import parse_duration
from topics import rules
from topics.models import DEFAULT_VERDICT_SCHEMA, JUDGE_COUNTS, Topic, VerdictSchema, Visibility

# option → default (DESIGN.md's "Operator commands"; the admin's add form uses the same ones).
DURATIONS = {
    "opens_in": timedelta(0),
    "signup_for": rules.DEFAULT_SIGNUP_FOR,
    "gap": rules.DEFAULT_GAP,
    "debate_for": rules.DEFAULT_DEBATE_FOR,
}


def _spelled(value: timedelta) -> str:
    minutes, seconds = divmod(int(value.total_seconds()), 60)
    return f"{minutes}m" if minutes and not seconds else f"{int(value.total_seconds())}s"


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
        "--verdict-within sets the verdict deadline after the debate ends; --judges seats a panel, --blind hides "
        "the debaters from everyone but themselves until completion. Durations: 90s, 10m, 1h30m, 15. "
        "Prints the new topic's id on the last line."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--title", required=True)
        parser.add_argument("--summary", default="")
        parser.add_argument("--visibility", choices=Visibility.values, default=Visibility.PUBLIC)
        parser.add_argument("--opens-in", metavar="DURATION", default=_spelled(DURATIONS["opens_in"]))
        parser.add_argument("--signup-for", metavar="DURATION", default=_spelled(DURATIONS["signup_for"]))
        parser.add_argument("--gap", metavar="DURATION", default=_spelled(DURATIONS["gap"]))
        parser.add_argument("--debate-for", metavar="DURATION", default=_spelled(DURATIONS["debate_for"]))
        parser.add_argument("--rounds", type=round_count, metavar="N", default=rules.DEFAULT_ROUNDS)
        parser.add_argument("--verdict-within", metavar="DURATION", help="Default: no verdict deadline.")
        parser.add_argument(
            "--judges",
            type=int,
            choices=JUDGE_COUNTS,
            metavar="N",
            default=1,
            help="Judge seats: 1 (default), or a panel of 3, 5 or 7 decided by majority.",
        )
        parser.add_argument(
            "--blind", action="store_true", help="Blind judging: debaters shown as their camp until completion."
        )
        parser.add_argument(
            "--schema",
            metavar="NAME",
            default=DEFAULT_VERDICT_SCHEMA,
            help=f"Verdict schema name (default: {DEFAULT_VERDICT_SCHEMA}).",
        )

    def handle(self, *args: object, **options: object) -> None:
        opens_in, signup_for, gap, debate_for = (self._duration(options, name) for name in DURATIONS)
        verdict_within = self._duration(options, "verdict_within") if options["verdict_within"] is not None else None
        schema = VerdictSchema.objects.filter(name=options["schema"]).first()
        if schema is None:
            known = ", ".join(VerdictSchema.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"--schema: no verdict schema named {options['schema']!r} (known: {known})")

        moments = rules.timeline(
            opens_at=timezone.now() + opens_in,
            signup_for=signup_for,
            gap=gap,
            debate_for=debate_for,
            verdict_within=verdict_within,
        )
        topic = Topic(
            title=str(options["title"]).strip(),
            summary=str(options["summary"]).strip(),
            visibility=options["visibility"],
            round_count=options["rounds"],
            judge_count=options["judges"],
            blind_judging=options["blind"],
            verdict_schema=schema,
            **moments,
        )
        try:
            topic.full_clean()
        except ValidationError as exc:
            raise CommandError(_describe(exc)) from None
        topic.save()

        when = "%Y-%m-%d %H:%M:%S UTC"
        self.stdout.write(
            f"Scheduled {topic.title!r} ({topic.visibility}, schema {schema.name}): "
            f"signup {topic.signup_open_at:{when}} → {topic.signup_close_at:{when}}, "
            f"debate {topic.debate_start_at:{when}} → {topic.debate_end_at:{when}} in {topic.round_count} round(s), "
            f"verdict due {f'{topic.verdict_due_at:{when}}' if topic.verdict_due_at else 'whenever'}"
            f"{f', {topic.judge_count} judges' if topic.is_panel else ''}{', blind' if topic.blind_judging else ''}"
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
    "judge_count": "--judges",
}


def _describe(exc: ValidationError) -> str:
    parts = []
    for field, messages in exc.message_dict.items():
        label = FIELD_OPTIONS.get(field, field)
        parts.extend(f"{label}: {message}" for message in messages)
    return "; ".join(parts)
