"""Judge panels and blind judging: judge seats, ballots, the panel's split, judges' agreement.

Every verdict already given becomes its judge's ballot, with the split of a
single judge ("1-0" when its schema names an outcome), so every completed
topic reads the same way.
"""

import django.db.models.deletion
from django.db import migrations, models

from topics.outcomes import OUTCOMES, verdict_outcome


def ballots_from_verdicts(apps, schema_editor):
    Verdict, Ballot, Camp = (
        apps.get_model("topics", "Verdict"),
        apps.get_model("topics", "Ballot"),
        apps.get_model("topics", "Camp"),
    )
    for verdict in Verdict.objects.select_related("topic__verdict_schema").iterator():
        seat = Camp.objects.filter(topic_id=verdict.topic_id, agent_id=verdict.judge_id, camp="judge").first()
        if seat is not None and not Ballot.objects.filter(seat=seat).exists():
            ballot = Ballot.objects.create(
                topic_id=verdict.topic_id,
                seat=seat,
                judge_id=verdict.judge_id,
                verdict=verdict.verdict,
                rationale=verdict.rationale,
            )
            # auto_now_add set it to now: the ballot was cast when the verdict was.
            Ballot.objects.filter(pk=ballot.pk).update(created_at=verdict.created_at)
        outcome = verdict_outcome(verdict.topic.verdict_schema.schema, verdict.verdict)
        if outcome is not None:
            verdict.split = "1-0"
            verdict.tally = {o: int(o == outcome) for o in OUTCOMES}
            verdict.save(update_fields=["split", "tally"])


class Migration(migrations.Migration):
    dependencies = [
        ("topics", "0006_agent_events"),
    ]

    operations = [
        migrations.CreateModel(
            name="Ballot",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("verdict", models.JSONField()),
                ("rationale", models.TextField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["topic", "seat__seat"],
            },
        ),
        migrations.AlterModelOptions(
            name="camp",
            options={"ordering": ["topic", "camp", "seat"]},
        ),
        migrations.RemoveConstraint(
            model_name="camp",
            name="camp_one_agent_per_camp",
        ),
        migrations.AddField(
            model_name="agentrating",
            name="agreed",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="agentrating",
            name="panel_ballots",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="camp",
            name="seat",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="ratedoutcome",
            name="panel",
            field=models.JSONField(default=list),
        ),
        migrations.AddField(
            model_name="topic",
            name="blind_judging",
            field=models.BooleanField(
                default=False, help_text="Hide who argues pro and con from everyone but the debaters until completion."
            ),
        ),
        migrations.AddField(
            model_name="topic",
            name="judge_count",
            field=models.PositiveSmallIntegerField(
                choices=[(1, "1"), (3, "3"), (5, "5"), (7, "7")],
                default=1,
                help_text="Judge seats: 1, or a panel of 3, 5 or 7 whose majority decides (the schema needs an outcome).",
            ),
        ),
        migrations.AddField(
            model_name="verdict",
            name="split",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="verdict",
            name="tally",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="topicevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("status_changed", "Status Changed"),
                    ("camps_allocated", "Camps Allocated"),
                    ("round_opened", "Round Opened"),
                    ("round_closed", "Round Closed"),
                    ("argument_posted", "Argument Posted"),
                    ("ballot_posted", "Ballot Posted"),
                    ("verdict_posted", "Verdict Posted"),
                    ("identities_revealed", "Identities Revealed"),
                    ("topic_cancelled", "Topic Cancelled"),
                ],
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="camp",
            constraint=models.UniqueConstraint(fields=("topic", "camp", "seat"), name="camp_one_agent_per_seat"),
        ),
        migrations.AddConstraint(
            model_name="camp",
            constraint=models.CheckConstraint(
                condition=models.Q(("camp", "judge"), ("seat", 0), _connector="OR"), name="camp_debaters_seat_zero"
            ),
        ),
        migrations.AddConstraint(
            model_name="topic",
            constraint=models.CheckConstraint(
                condition=models.Q(("judge_count__in", (1, 3, 5, 7))), name="topic_judge_count_valid"
            ),
        ),
        migrations.AddField(
            model_name="ballot",
            name="judge",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="ballots", to="topics.agent"
            ),
        ),
        migrations.AddField(
            model_name="ballot",
            name="seat",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.RESTRICT, related_name="ballot", to="topics.camp"
            ),
        ),
        migrations.AddField(
            model_name="ballot",
            name="topic",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="ballots", to="topics.topic"
            ),
        ),
        migrations.AddConstraint(
            model_name="ballot",
            constraint=models.UniqueConstraint(fields=("topic", "judge"), name="ballot_once_per_judge"),
        ),
        migrations.RunPython(ballots_from_verdicts, migrations.RunPython.noop),
    ]
