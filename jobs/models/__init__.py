"""Models of the jobs app, one module per model family."""

from jobs.models.google_account import GoogleAccount, GoogleAccountStatus
from jobs.models.interaction import Interaction, InteractionKind
from jobs.models.job import Job, JobStatus
from jobs.models.quota import QuotaDaily, QuotaUsage
from jobs.models.raw_event import NormalizationStatus, RawEvent
from jobs.models.run_totals import RunTotals, RunTotalsMark
from jobs.models.sync_state import Provider, SyncState

__all__ = [
    "GoogleAccount",
    "GoogleAccountStatus",
    "Interaction",
    "InteractionKind",
    "Job",
    "JobStatus",
    "NormalizationStatus",
    "Provider",
    "QuotaDaily",
    "QuotaUsage",
    "RawEvent",
    "RunTotals",
    "RunTotalsMark",
    "SyncState",
]
