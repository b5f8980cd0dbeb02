"""The default ``winner`` schema names its outcome, so topics using it are rated (docs/ratings.md).

Adding ``x-outcome`` changes no verdict's validity (validators ignore unknown
keywords), which is why a schema that announced topics already use may change
here although the admin freezes it.
"""

from django.db import migrations

POINTER = "/winner"


def add_outcome(apps, schema_editor):
    VerdictSchema = apps.get_model("topics", "VerdictSchema")
    for schema in VerdictSchema.objects.filter(name="winner"):
        if "x-outcome" not in schema.schema:
            schema.schema = {**schema.schema, "x-outcome": POINTER}
            schema.save(update_fields=["schema"])


def remove_outcome(apps, schema_editor):
    VerdictSchema = apps.get_model("topics", "VerdictSchema")
    for schema in VerdictSchema.objects.filter(name="winner"):
        if schema.schema.get("x-outcome") == POINTER:
            schema.schema = {k: v for k, v in schema.schema.items() if k != "x-outcome"}
            schema.save(update_fields=["schema"])


class Migration(migrations.Migration):
    dependencies = [("topics", "0004_ratings")]
    operations = [migrations.RunPython(add_outcome, remove_outcome)]
