"""Indexes contacts needs on the jobs tables it reads (jobs itself knows nothing of contacts).

- jobs_rawevent (user_id, batch_id): batch_interaction_ids after normalization (the jobs index
  on batch_id only covers pending rows).
- jobs_interaction (user_id, metadata->>'message_id') for Gmail: one e-mail, one event (the
  same RFC Message-ID seen twice is linked to its canonical interaction).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0001_initial"),
        ("jobs", "0004_job_priority"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS contacts_rawevent_batch_idx "
            "ON jobs_rawevent (user_id, batch_id)",
            "DROP INDEX IF EXISTS contacts_rawevent_batch_idx",
        ),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS contacts_interaction_msgid_idx "
            "ON jobs_interaction (user_id, (metadata->>'message_id')) "
            "WHERE source = 'gmail' AND (metadata->>'message_id') IS NOT NULL",
            "DROP INDEX IF EXISTS contacts_interaction_msgid_idx",
        ),
    ]
