"""Provider ids up to 2,048 characters (jobs.models.raw_event.SOURCE_ID_MAX_LENGTH): Calendar event
ids reach 1,024 characters, and a source id is "<calendar id>/<event id>". Widening a varchar is
a catalog change in PostgreSQL: no table rewrite and no index rebuild."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0012_reconcile_runs"),
    ]

    operations = [
        migrations.AlterField(
            model_name="interaction",
            name="source_id",
            field=models.CharField(max_length=2048),
        ),
        migrations.AlterField(
            model_name="interaction",
            name="thread_id",
            field=models.CharField(blank=True, max_length=2048),
        ),
        migrations.AlterField(
            model_name="rawevent",
            name="source_id",
            field=models.CharField(max_length=2048),
        ),
    ]
