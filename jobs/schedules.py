"""The django-q2 Schedules crm-pipeline needs, created or updated idempotently after migrate."""

from __future__ import annotations

from typing import Any

from jobs.config import get_config

TICK = "crm_pipeline.tick"
PERIODIC_SYNC = "crm_pipeline.periodic_sync"
PENDING_SWEEP = "crm_pipeline.pending_sweep"
PUSH_RENEW = "crm_pipeline.push_renew"
RECONCILE = "crm_pipeline.reconcile"
# The reconcile schedule looks for due accounts this often; each account is reconciled once per
# reconcile_interval_hours (jobs.sync.reconcile.reconcile_due_accounts).
RECONCILE_CHECK_MINUTES = 60


def wanted_schedules() -> dict[str, dict[str, Any]]:
    """Schedule name -> fields."""
    config = get_config()
    return {
        TICK: {
            "func": "jobs.runner.tick",
            "schedule_type": "I",
            "minutes": config.tick_interval_minutes,
        },
        PERIODIC_SYNC: {
            "func": "jobs.sync.periodic.periodic_sync",
            "schedule_type": "I",
            "minutes": config.periodic_sync_minutes,
        },
        PENDING_SWEEP: {
            "func": "jobs.sync.sweep.sweep_pending_raw_events",
            "schedule_type": "I",
            "minutes": config.pending_sweep_interval_minutes,
        },
        # Push watches and channels: made, renewed before they expire, stopped when unwanted
        # (a no-op while push is not configured).
        PUSH_RENEW: {
            "func": "jobs.sync.push.push_renew_due",
            "schedule_type": "I",
            "minutes": config.push_renew_interval_minutes,
        },
        # Completeness: a reconcile job per active account once per reconcile_interval_hours.
        RECONCILE: {
            "func": "jobs.sync.reconcile.reconcile_schedule",
            "schedule_type": "I",
            "minutes": min(RECONCILE_CHECK_MINUTES, config.reconcile_interval_hours * 60),
        },
    }


def ensure_schedules(**kwargs: Any) -> None:
    from django_q.models import Schedule

    for name, fields in wanted_schedules().items():
        Schedule.objects.update_or_create(name=name, defaults={**fields, "repeats": -1})
