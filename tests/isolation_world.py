"""Two users with a row in every user-owned table, and the checks every isolation test makes:
a snapshot of one user's rows, a scan of a result for the other user's rows or text, and the
invariant that no row of one user points at another user's row.

Used by tests/test_isolation_enumerated.py. Each user's data is written the way the pipeline
writes it (raw events synced and run through every stage inline, the embed stage against the
OpenAI-compatible stand-in), plus a merge, a pending merge suggestion, a failed and a queued
job, a sync state, a push channel and a pending raw event. Every text of a user carries the
user's tag ("adatag" / "bobtag"), so a leak of the other user's text is visible in any output;
both users mail the same correspondent (jane@acme.example), so a lookup by e-mail address
that forgets the user finds two rows.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from contacts.models import Contact, ContactMerge, MergeSuggestion
from contacts.services.merge import contact_merge
from insights.models import Insight
from jobs.enqueue import enqueue
from jobs.models import (
    GoogleAccount,
    Interaction,
    Job,
    JobStatus,
    PushChannel,
    RawEvent,
    ReconcileRun,
    ReconcileStatus,
    SyncState,
)
from jobs.runner import run_due_jobs, run_job
from search.indexes import forget_checked_indexes
from timeline.models import TimelineEvent

PROJECT_APPS = ("crm_pipeline", "jobs", "contacts", "timeline", "search", "insights")
DAY = timedelta(days=1)
STAND_IN_MODEL = "nomic-embed-text"
STAND_IN_DIMS = 64
_serial = iter(range(1, 10**9))


def configure(settings, openai_server) -> None:
    """Jobs run inline; the embed stage against the stand-in (bag-of-words vectors)."""
    settings.CRM_PIPELINE = {**settings.CRM_PIPELINE, "handoff": "none"}
    settings.CRM_PIPELINE_SEARCH = {
        "provider": "openai",
        "openai_base_url": openai_server.base_url,
        "openai_model": STAND_IN_MODEL,
        "openai_dimensions": STAND_IN_DIMS,
        "max_retries": 0,
        "timeout_s": 5.0,
        "batch_size": 16,
    }
    forget_checked_indexes()


def _gmail(*, frm: str, to: str, subject: str, at: datetime, body: str, sent=False) -> dict:
    n = next(_serial)
    headers = {"From": frm, "To": to, "Subject": subject, "Message-ID": f"<iso{n}@mail.example>"}
    return {
        "id": f"iso{n:06d}",
        "threadId": f"iso-t{n}",
        "labelIds": ["SENT"] if sent else ["INBOX"],
        "snippet": subject,
        "internalDate": str(int(at.timestamp() * 1000)),
        "payload": {
            "mimeType": "text/plain",
            "headers": [{"name": k, "value": v} for k, v in headers.items()],
            "body": {"data": base64.urlsafe_b64encode(body.encode()).decode()},
        },
    }


@dataclass
class Side:
    """One user and the ids of their rows."""

    tag: str
    user: Any
    account: GoogleAccount
    batch: uuid.UUID
    contacts: list[int] = field(default_factory=list)
    jane: Contact | None = None
    interactions: list[int] = field(default_factory=list)
    raw_events: list[int] = field(default_factory=list)
    pending_raw: RawEvent | None = None
    suggestion: MergeSuggestion | None = None
    merge: ContactMerge | None = None
    insights: list[int] = field(default_factory=list)
    timeline_events: list[int] = field(default_factory=list)
    failed_job: Job | None = None
    queued_job: Job | None = None
    sync_state: SyncState | None = None
    push_channel: PushChannel | None = None
    reconcile_run: ReconcileRun | None = None


@dataclass
class World:
    a: Side
    b: Side
    now: datetime


def _side(username: str, tag: str, now: datetime) -> Side:
    user = get_user_model().objects.create_user(
        username, email=f"{tag}@example.com", password="pw", is_staff=True
    )
    own = f"{tag}@example.com"
    account = GoogleAccount.objects.create(user=user, email=own, addresses=[own])
    jane = f"Jane {tag.title()} <jane@acme.example>"
    mails = []
    for n in range(4):
        mails.append(
            _gmail(
                frm=jane,
                to=own,
                subject=f"{tag} plan {n}",
                at=now - (30 - 5 * n) * DAY,
                body=f"The {tag} roadmap, part {n}.",
            )
        )
        mails.append(
            _gmail(
                frm=own,
                to=jane,
                subject=f"Re: {tag} plan {n}",
                at=now - (29 - 5 * n) * DAY,
                body=f"Thanks for the {tag} notes.",
                sent=True,
            )
        )
    mails.append(
        _gmail(
            frm=jane,
            to=own,
            subject=f"{tag} invoice",
            at=now - 5 * DAY,
            body=f"Could you confirm the {tag} invoice address?",
        )
    )
    # a near-duplicate pair: a pending merge suggestion
    for address in ("kjohnson@nasa.example", "kj@nasa.example"):
        name = "Katherine Johnson" if address.startswith("kjohnson") else "Katherine Johnsen"
        mails.append(
            _gmail(
                frm=f"{name} <{address}>",
                to=own,
                subject=f"{tag} orbit",
                at=now - 3 * DAY,
                body=f"{tag} trajectory",
            )
        )
    # two people merged by hand: a contact merge
    for who in ("max", "mia"):
        mails.append(
            _gmail(
                frm=f"{who.title()} {tag.title()} <{who}@other.example>",
                to=own,
                subject=f"{tag} hello from {who}",
                at=now - 2 * DAY,
                body=f"{tag} {who}",
            )
        )
    batch = uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(
            user=user,
            account=account,
            provider="gmail",
            source_id=m["id"],
            payload=m,
            batch_id=batch,
        )
        for m in mails
    )
    enqueue("normalize_gmail", user=user, batch_id=batch, dedupe_key=f"iso:{user.pk}:{batch}")
    run_due_jobs(until_empty=True)

    side = Side(tag=tag, user=user, account=account, batch=batch)
    max_, mia = (
        Contact.objects.get(user=user, primary_email=f"{who}@other.example")
        for who in ("max", "mia")
    )
    side.suggestion = MergeSuggestion.objects.get(
        user=user, contact_a__primary_email__endswith="@nasa.example"
    )
    side.merge = contact_merge(user=user, source=max_, target=mia)
    side.jane = Contact.objects.get(user=user, primary_email="jane@acme.example")
    side.contacts = list(Contact.objects.filter(user=user).values_list("pk", flat=True))
    side.interactions = list(Interaction.objects.filter(user=user).values_list("pk", flat=True))
    side.raw_events = list(RawEvent.objects.filter(user=user).values_list("pk", flat=True))
    side.insights = list(Insight.objects.filter(user=user).values_list("pk", flat=True))
    side.timeline_events = list(
        TimelineEvent.objects.filter(user=user).values_list("pk", flat=True)
    )
    pending = _gmail(
        frm=jane, to=own, subject=f"{tag} pending", at=now - DAY, body=f"{tag} not yet"
    )
    side.pending_raw = RawEvent.objects.create(
        user=user,
        account=account,
        provider="gmail",
        source_id=pending["id"],
        payload=pending,
        batch_id=batch,
    )
    failed = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(failed.pk)
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED
    side.failed_job = failed
    side.queued_job = enqueue("record", user=user)
    side.sync_state = SyncState.objects.create(
        user=user, account=account, provider="calendar", cursor=f"{tag}-cursor"
    )
    side.push_channel = PushChannel.objects.create(
        user=user, account=account, provider="gmail", channel_id=f"{tag}-channel"
    )
    side.reconcile_run = ReconcileRun.objects.create(
        user=user,
        account=account,
        provider="gmail",
        status=ReconcileStatus.GAP,
        provider_count=5,
        stored_count=4,
        missing_count=1,
        missing_sample=[f"{tag}-missing-id"],
        detail=f"{tag}: one message missing",
        started_at=now,
        finished_at=now,
    )
    return side


def build_world() -> World:
    now = timezone.now()
    a = _side("ada", "adatag", now)
    b = _side("bob", "bobtag", now)
    world = World(a=a, b=b, now=now)
    for side in (a, b):
        assert side.insights, f"{side.tag}: the world has no insights"
        assert side.timeline_events, f"{side.tag}: the world has no timeline events"
        assert Job.objects.filter(user=side.user, kind="embed", status="succeeded").exists()
    assert not cross_user_references()
    return world


# -- what a check looks at --------------------------------------------------------------------


def user_models() -> list[type[models.Model]]:
    """Every model of the project apps with a `user` field."""
    return [
        model
        for model in apps.get_models()
        if model._meta.app_label in PROJECT_APPS
        and not model._meta.proxy
        and any(f.name == "user" for f in model._meta.concrete_fields)
    ]


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def snapshot(user) -> dict[str, list[dict[str, Any]]]:
    """Every row the user owns, every column, in a comparable form (the user row itself too)."""
    shot = {
        model._meta.label: {
            row[model._meta.pk.attname]: {k: _plain(v) for k, v in row.items()}
            for row in model.objects.filter(user_id=user.pk).values()
        }
        for model in user_models()
    }
    shot["auth.user"] = {r["id"]: r for r in get_user_model().objects.filter(pk=user.pk).values()}
    return shot


def snapshot_diff(before: dict, after: dict) -> list[str]:
    changes = []
    for label in sorted(set(before) | set(after)):
        old, new = before.get(label, {}), after.get(label, {})
        for pk in sorted(set(old) | set(new)):
            if pk not in new:
                changes.append(f"{label} #{pk} deleted")
            elif pk not in old:
                changes.append(f"{label} #{pk} created")
            elif old[pk] != new[pk]:
                fields = sorted(k for k in old[pk] if old[pk][k] != new[pk].get(k))
                changes.append(f"{label} #{pk} changed: {', '.join(fields)}")
    return changes


def fingerprint(user) -> dict[str, str]:
    """A hash of every row the user owns, per table: one query (the snapshot's quick twin)."""
    parts = [
        f"SELECT %s, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
        f"FROM {model._meta.db_table} t WHERE t.user_id = %s"
        for model in user_models()
    ]
    params: list[Any] = []
    for model in user_models():
        params += [model._meta.label, user.pk]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(f"({p})" for p in parts), params)
        return dict(cursor.fetchall())


def _references() -> list[tuple[type[models.Model], Any]]:
    owned = set(user_models())
    return [
        (model, fk)
        for model in user_models()
        for fk in model._meta.concrete_fields
        if fk.is_relation and fk.name != "user" and fk.related_model in owned
    ]


def any_cross_user_reference() -> bool:
    """Whether any row points at another user's row: one query."""
    parts = [
        f"SELECT 1 FROM {model._meta.db_table} r JOIN {fk.related_model._meta.db_table} o "
        f"ON o.{fk.target_field.column} = r.{fk.column} WHERE o.user_id <> r.user_id"
        for model, fk in _references()
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS ({' UNION ALL '.join(parts)})")
        return bool(cursor.fetchone()[0])


def cross_user_references() -> list[str]:
    """Rows of one user pointing (by a foreign key) at another user's row."""
    if not any_cross_user_reference():
        return []
    found = []
    owned = set(user_models())
    for model in owned:
        for fk in model._meta.concrete_fields:
            if not fk.is_relation or fk.name == "user" or fk.related_model not in owned:
                continue
            bad = (
                model.objects.filter(**{f"{fk.name}__isnull": False})
                .exclude(**{f"{fk.name}__user_id": F("user_id")})
                .values_list("pk", flat=True)[:5]
            )
            if bad:
                found.append(f"{model._meta.label}.{fk.name} of rows {list(bad)}")
    return found


def leaks(result: Any, *, viewer, other: Side) -> list[str]:
    """The other user's rows or text in a result: model instances not the viewer's, and any
    string with the other user's tag."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(value: Any, depth: int = 0) -> None:
        if depth > 12 or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, str):
            if other.tag in value.lower():
                found.append(f"text {value[:80]!r}")
            return
        if isinstance(value, (bytes, int, float, bool, type(None), datetime, uuid.UUID)):
            return
        if isinstance(value, models.Model):
            owner = (
                value.pk if isinstance(value, get_user_model()) else getattr(value, "user_id", None)
            )
            if owner is not None and owner != viewer.pk:
                found.append(f"{value._meta.label} #{value.pk} of user {owner}")
            walk({k: v for k, v in vars(value).items() if not k.startswith("_")}, depth + 1)
            return
        if isinstance(value, QuerySet):
            walk(list(value), depth + 1)
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, depth + 1)
                walk(v, depth + 1)
            return
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), depth + 1)
            if not isinstance(value, Iterable):
                return
        if isinstance(value, Iterable):
            for item in list(value):
                walk(item, depth + 1)
            return
        if hasattr(value, "__dict__"):
            walk(vars(value), depth + 1)

    walk(result)
    return found


def owned_by(model: type[models.Model], ids: Iterable[int], user) -> bool:
    ids = list(ids)
    return model.objects.filter(Q(pk__in=ids) & ~Q(user_id=user.pk)).count() == 0
