from django.db import migrations

WINNER = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["winner"],
    "properties": {
        "winner": {"enum": ["pro", "con", "draw"]},
        "scores": {
            "type": "object",
            "properties": {"pro": {"type": "number"}, "con": {"type": "number"}},
            "additionalProperties": {"type": "number"},
        },
    },
}


def create_winner(apps, schema_editor):
    VerdictSchema = apps.get_model("topics", "VerdictSchema")
    VerdictSchema.objects.get_or_create(
        name="winner",
        defaults={
            "schema": WINNER,
            "description": "Who won: pro, con or draw, with optional numeric scores per camp.",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("topics", "0001_initial")]
    operations = [migrations.RunPython(create_winner, migrations.RunPython.noop)]
