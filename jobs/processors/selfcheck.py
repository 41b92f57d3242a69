"""selfcheck: proves the engine end to end (claim, a database round trip, pgvector)."""

from __future__ import annotations

from django.db import connection

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.errors import PermanentError
from jobs.models import Job


@processor("selfcheck")
def run(job: Job, ctx: JobContext) -> Metrics:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        raise PermanentError("the pgvector extension is not installed in this database")
    return Metrics(details={"pgvector": row[0]})
