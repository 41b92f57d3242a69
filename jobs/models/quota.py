"""Quota spent against Google's per-minute limits: one row per reservation and scope."""

from __future__ import annotations

from django.db import models


class QuotaUsage(models.Model):
    """`units` spent at `spent_at` (the database clock) against one limit's `scope`.

    A scope names one limit: "gmail:project", "gmail:user:<mailbox address>",
    "gmail:user:<mailbox address>:background", and the same for "calendar" (Google counts a
    per-user limit per mailbox, so two CRM users who connect one mailbox share it). The pacer
    (jobs.google.pacer) sums a scope's rows over the sliding window before it admits a call and
    deletes rows older than the window; no row references an account, so a deleted account's
    rows simply age out.
    """

    scope = models.CharField(max_length=400)
    spent_at = models.DateTimeField()
    units = models.FloatField()

    class Meta:
        indexes = [
            models.Index(fields=["scope", "spent_at"], name="quota_usage_scope_at"),
            models.Index(fields=["spent_at"], name="quota_usage_spent_at"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}: {self.units:g} at {self.spent_at:%H:%M:%S.%f}"


class QuotaDaily(models.Model):
    """Units spent per scope and UTC day, added by the same statement that records a
    reservation (QuotaUsage rows leave after the pacer's window, so "today" needs its own row).
    Read by the pipeline page, pipeline_status and /metrics; days older than
    QUOTA_DAILY_KEEP_DAYS are deleted by the pacer's sweep."""

    scope = models.CharField(max_length=400)
    day = models.DateField()
    units = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "day"], name="quota_daily_scope_day_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.scope} on {self.day}: {self.units:g}"


QUOTA_DAILY_KEEP_DAYS = 35
