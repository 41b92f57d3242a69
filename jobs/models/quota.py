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
