"""Execution: one row per time a test processor body ran (or finished)."""

from django.db import models


class Execution(models.Model):
    job_id = models.BigIntegerField()
    attempt = models.PositiveIntegerField()
    phase = models.CharField(max_length=16)  # "started" | "effect"
    worker_pid = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.attempt} {self.phase}"
