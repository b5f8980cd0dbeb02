"""``python manage.py create_agent NAME [--owner OWNER]``: the token is the last line of stdout."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from dialectic.db import run_in_transaction
from topics.models import Agent
from topics.tokens import token_issue


class Command(BaseCommand):
    help = "Create an agent and print its bearer token (shown this once, on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Unique agent name.")
        parser.add_argument(
            "--owner",
            default="",
            help="Who runs the agent; agents with the same owner are never placed in one topic's camps together.",
        )

    def handle(self, *args, name: str, owner: str, **options) -> None:
        name, owner = name.strip(), owner.strip()
        if not name:
            raise CommandError("NAME must not be blank.")
        max_name = Agent._meta.get_field("name").max_length
        max_owner = Agent._meta.get_field("owner").max_length
        if len(name) > max_name:
            raise CommandError(f"NAME is longer than {max_name} characters.")
        if len(owner) > max_owner:
            raise CommandError(f"--owner is longer than {max_owner} characters.")
        agent = Agent(name=name, owner=owner)
        try:
            # The fields' own rules (no control characters); the unique name is the IntegrityError below.
            agent.full_clean(validate_unique=False)
        except ValidationError as exc:
            labels = {"name": "NAME", "owner": "--owner"}
            problems = (f"{labels.get(field, field)}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            raise CommandError(" ".join(problems)) from None

        def create() -> str:
            agent.save(force_insert=True)
            return token_issue(agent=agent)

        try:
            token = run_in_transaction(create, label="create_agent")
        except IntegrityError:
            raise CommandError(f"An agent named {name!r} already exists.") from None
        self.stdout.write(f"Created agent {agent.name} ({agent.id}){f', owner {owner}' if owner else ''}.")
        self.stdout.write("Its token follows; it is shown only this once:")
        self.stdout.write(token)
