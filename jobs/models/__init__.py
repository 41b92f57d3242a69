"""Models of the jobs app, one module per model family."""

from jobs.models.google_account import GoogleAccount, GoogleAccountStatus
from jobs.models.interaction import Interaction, InteractionKind
from jobs.models.job import Job, JobStatus
from jobs.models.push import PushChannel, PushChannelStatus
from jobs.models.quota import QuotaDaily, QuotaUsage
from jobs.models.raw_event import NormalizationStatus, PendingRawEvent, RawEvent
from jobs.models.reconcile import ReconcileRun, ReconcileStatus
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
    "PendingRawEvent",
    "Provider",
    "PushChannel",
    "PushChannelStatus",
    "QuotaDaily",
    "QuotaUsage",
    "RawEvent",
    "ReconcileRun",
    "ReconcileStatus",
    "RunTotals",
    "RunTotalsMark",
    "SyncState",
]
