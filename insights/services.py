"""Insight writes: the rules' candidates stored by fingerprint, stale and expired ones removed,
statuses set by people, the LLM's phrasing recorded, and the merge hook.

Generation (`insights_generate`) runs in phases, each a fenced write per chunk:

1. ``contacts``: per chunk of live contacts, relationship strength and going cold;
2. ``awaiting_reply``: threads with an unanswered question;
3. ``meeting_prep``: meetings in the next `meeting_prep_hours`;
4. ``weekly_digest``: last week's digest;
5. ``expire``: rows past `expires_at` are deleted;
6. ``llm``: open insights of `llm_kinds` whose content changed are phrased by the LLM (outside
   any transaction), each answer written in its own fenced transaction.

Idempotent: a candidate updates the row of its fingerprint (one per user) and never its
status; content that did not change is not rewritten. A row of a phase's scope that the run no
longer finds (a reply came, a new silence began, the meeting moved) is *resolved*: deleted when
it was still open (new or seen), kept until it expires when someone dismissed it or marked it
done (their decision is remembered should the same fingerprint come back). Every write of a
user's insights takes a per-user advisory lock, so two runs of one user (two batches) write one
after the other and each chunk is computed from what is committed when it starts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection, transaction
from django.utils import timezone

from contacts.models import Contact
from contacts.rollups import live_contact_ids
from insights.conf import InsightsConfig, get_config
from insights.models import OPEN_STATUSES, Insight, InsightKind, InsightStatus, SummarySource
from insights.rules.awaiting_reply import awaiting_reply
from insights.rules.base import Candidate
from insights.rules.cold import going_cold
from insights.rules.digest import weekly_digest
from insights.rules.meeting_prep import meeting_prep
from insights.rules.strength import relationship_strength
from insights.selectors import (
    awaiting_reply_threads,
    contact_facts,
    digest_facts,
    insights_llm_pending,
    interaction_texts,
    upcoming_meetings,
)
from jobs.locks import INSIGHTS_LOCK_NAMESPACE, user_xact_lock

PHASES: tuple[str, ...] = (
    "contacts",
    "awaiting_reply",
    "meeting_prep",
    "weekly_digest",
    "expire",
    "llm",
)
CONTACT_KINDS = (InsightKind.RELATIONSHIP_STRENGTH.value, InsightKind.GOING_COLD.value)
MERGE_HOOK = "insights"
NOT_CONFIGURED = "not_configured"
# Messages (newest of an insight's interactions) the LLM reads, and insights read per query.
LLM_MESSAGES = 8
LLM_BATCH = 20

_INSIGHT = Insight._meta.db_table
_CONTACT = Contact._meta.db_table

T = TypeVar("T")


# --- reports ---------------------------------------------------------------------------------


@dataclass(slots=True)
class InsightsReport:
    """What a run did: subjects evaluated, rows inserted / updated (content changed) /
    refreshed (only their expiry or LLM state) / unchanged, resolved and expired rows deleted,
    LLM calls and their outcomes."""

    evaluated: int = 0
    inserted: int = 0
    updated: int = 0
    refreshed: int = 0
    unchanged: int = 0
    resolved: int = 0
    expired: int = 0
    chunks: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    llm_calls: int = 0
    llm_phrased: int = 0
    llm_fallbacks: Counter[str] = field(default_factory=Counter)

    def details(self) -> dict[str, Any]:
        return {
            "itemsUpdated": self.updated,
            "refreshed": self.refreshed,
            "resolved": self.resolved,
            "expired": self.expired,
            "chunks": self.chunks,
            "byKind": dict(sorted(self.by_kind.items())),
            "llmCalls": self.llm_calls,
            "llmPhrased": self.llm_phrased,
            "llmFallbacks": dict(sorted(self.llm_fallbacks.items())),
        }


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a run that stopped at its deadline goes on: the phase and the last id done."""

    phase: str
    after_id: int = 0


# --- storing ---------------------------------------------------------------------------------

# One statement per chunk of candidates. `before`: the content hashes the rows had (every CTE
# sees the statement's snapshot), to tell content changes from refreshes. On conflict the
# status is never touched; the LLM's summary stays while the material content it phrased
# (basis_hash) is the same, else the heuristic text takes its place and the LLM is due again;
# a row whose content, basis, LLM state and expiry (within 12 hours) are the same is not
# rewritten. Contacts must be the user's.
_STORE_SQL = f"""
WITH src AS (
    SELECT * FROM unnest(
        %(fingerprint)s::text[], %(kind)s::text[], %(contact_id)s::int8[], %(title)s::text[],
        %(summary)s::text[], %(evidence)s::text[], %(open_questions)s::text[],
        %(score)s::float8[], %(content_hash)s::text[], %(basis_hash)s::text[],
        %(expires_at)s::timestamptz[], %(reason)s::text[])
        AS s(fingerprint, kind, contact_id, title, summary, evidence, open_questions, score,
             content_hash, basis_hash, expires_at, reason)
     WHERE s.contact_id IS NULL
        OR EXISTS (SELECT 1 FROM {_CONTACT} c
                    WHERE c.id = s.contact_id AND c.user_id = %(user_id)s)
), before AS (
    SELECT i.fingerprint, i.content_hash FROM {_INSIGHT} i
     WHERE i.user_id = %(user_id)s AND i.fingerprint = ANY(%(fingerprint)s::text[])
), written AS (
    INSERT INTO {_INSIGHT} AS i (
        user_id, kind, contact_id, fingerprint, status, title, summary, heuristic_summary,
        summary_source, llm_fallback_reason, evidence, open_questions, score, content_hash,
        basis_hash, llm_basis_hash, expires_at, created_at, updated_at)
    SELECT %(user_id)s, s.kind, s.contact_id, s.fingerprint, 'new', s.title, s.summary,
           s.summary, 'heuristic', s.reason, s.evidence::jsonb, s.open_questions::jsonb,
           s.score, s.content_hash, s.basis_hash, '', s.expires_at, statement_timestamp(),
           statement_timestamp()
      FROM src s
    ON CONFLICT (user_id, fingerprint) DO UPDATE SET
        kind = EXCLUDED.kind,
        contact_id = EXCLUDED.contact_id,
        title = EXCLUDED.title,
        heuristic_summary = EXCLUDED.heuristic_summary,
        summary = CASE WHEN i.summary_source = 'llm' AND i.llm_basis_hash = EXCLUDED.basis_hash
                       THEN i.summary ELSE EXCLUDED.summary END,
        open_questions = CASE WHEN i.summary_source = 'llm'
                                   AND i.llm_basis_hash = EXCLUDED.basis_hash
                              THEN i.open_questions ELSE EXCLUDED.open_questions END,
        summary_source = CASE WHEN i.summary_source = 'llm'
                                   AND i.llm_basis_hash = EXCLUDED.basis_hash
                              THEN 'llm' ELSE 'heuristic' END,
        llm_fallback_reason = CASE WHEN i.llm_basis_hash = EXCLUDED.basis_hash
                                   THEN i.llm_fallback_reason
                                   ELSE EXCLUDED.llm_fallback_reason END,
        evidence = EXCLUDED.evidence,
        score = EXCLUDED.score,
        content_hash = EXCLUDED.content_hash,
        basis_hash = EXCLUDED.basis_hash,
        expires_at = EXCLUDED.expires_at,
        updated_at = statement_timestamp()
     WHERE i.content_hash <> EXCLUDED.content_hash
        OR i.basis_hash <> EXCLUDED.basis_hash
        OR i.contact_id IS DISTINCT FROM EXCLUDED.contact_id
        OR (i.llm_basis_hash <> EXCLUDED.basis_hash
            AND i.llm_fallback_reason IS DISTINCT FROM EXCLUDED.llm_fallback_reason)
        OR i.expires_at < EXCLUDED.expires_at - interval '12 hours'
        OR i.expires_at > EXCLUDED.expires_at
    RETURNING i.fingerprint, (xmax = 0) AS inserted, i.content_hash
)
SELECT w.fingerprint, w.inserted, w.content_hash IS DISTINCT FROM b.content_hash
  FROM written w LEFT JOIN before b ON b.fingerprint = w.fingerprint
"""


def _initial_reason(kind: str, config: InsightsConfig) -> str | None:
    """The fallback reason a new or changed insight starts with: "not_configured" for a kind
    the LLM would phrase when no LLM is configured; None otherwise (pending, or not phrased)."""
    if kind in config.llm_kinds and not config.llm_enabled:
        return NOT_CONFIGURED
    return None


def insights_store(
    *, user_id: int, candidates: Sequence[Candidate], config: InsightsConfig, report: InsightsReport
) -> set[str]:
    """Upsert the candidates by (user, fingerprint) in one statement; their fingerprints."""
    unique = {c.fingerprint: c for c in candidates}
    if not unique:
        return set()
    rows = list(unique.values())
    params: dict[str, Any] = {
        "user_id": user_id,
        "fingerprint": [c.fingerprint for c in rows],
        "kind": [c.kind for c in rows],
        "contact_id": [c.contact_id for c in rows],
        "title": [c.title for c in rows],
        "summary": [c.summary for c in rows],
        "evidence": [json.dumps(c.evidence, ensure_ascii=False) for c in rows],
        "open_questions": [json.dumps(c.open_questions, ensure_ascii=False) for c in rows],
        "score": [c.score for c in rows],
        "content_hash": [c.content_hash for c in rows],
        "basis_hash": [c.basis_hash for c in rows],
        "expires_at": [c.expires_at for c in rows],
        "reason": [_initial_reason(c.kind, config) for c in rows],
    }
    with connection.cursor() as cursor:
        cursor.execute(_STORE_SQL, params)
        written = cursor.fetchall()
    inserted = sum(1 for _, fresh, _ in written if fresh)
    updated = sum(1 for _, fresh, changed in written if not fresh and changed)
    report.inserted += inserted
    report.updated += updated
    report.refreshed += len(written) - inserted - updated
    report.unchanged += len(rows) - len(written)
    report.by_kind.update(c.kind for c in rows)
    return set(unique)


def insights_resolve(
    *,
    user_id: int,
    kinds: Sequence[str],
    keep: set[str],
    contact_ids: Sequence[int] | None = None,
) -> int:
    """Delete the user's open insights of `kinds` (about `contact_ids`, when given) whose
    fingerprint is not in `keep`: their situation is over. Dismissed and done ones stay until
    they expire. How many were deleted."""
    rows = Insight.objects.filter(user_id=user_id, kind__in=list(kinds), status__in=OPEN_STATUSES)
    if contact_ids is not None:
        rows = rows.filter(contact_id__in=list(contact_ids))
    deleted, _ = rows.exclude(fingerprint__in=list(keep)).delete()
    return deleted


def insights_expire(*, user_id: int, now: datetime) -> int:
    """Delete the user's insights past their expiry, whatever their status; how many."""
    deleted, _ = Insight.objects.filter(user_id=user_id, expires_at__lte=now).delete()
    return deleted


def _write(user_id: int, fence: Callable[[], None] | None, work: Callable[[], T]) -> T:
    """`work` in a transaction: fenced first (a job's lease), then the user's insights lock."""
    with transaction.atomic():
        if fence is not None:
            fence()
        user_xact_lock(INSIGHTS_LOCK_NAMESPACE, user_id=user_id)
        return work()


# --- the phases ------------------------------------------------------------------------------


def insights_contacts_chunk(
    *,
    user_id: int,
    contact_ids: Sequence[int],
    now: datetime,
    config: InsightsConfig,
    report: InsightsReport,
) -> None:
    """Strength and going cold for a chunk of contacts; resolves the chunk's stale ones.
    Call under _write (the lock)."""
    facts = contact_facts(user_id=user_id, contact_ids=contact_ids, now=now)
    candidates = [
        candidate
        for contact in facts
        for candidate in (
            relationship_strength(contact, now=now, config=config),
            going_cold(contact, now=now, config=config),
        )
        if candidate is not None
    ]
    keep = insights_store(user_id=user_id, candidates=candidates, config=config, report=report)
    report.resolved += insights_resolve(
        user_id=user_id, kinds=CONTACT_KINDS, keep=keep, contact_ids=contact_ids
    )
    report.evaluated += len(facts)


def _user_phase(
    phase: str, *, user_id: int, now: datetime, config: InsightsConfig, report: InsightsReport
) -> None:
    """One of the user-level phases (awaiting_reply, meeting_prep, weekly_digest, expire)."""
    if phase == "expire":
        report.expired += insights_expire(user_id=user_id, now=now)
        return
    candidates: list[Candidate | None]
    if phase == "awaiting_reply":
        threads = awaiting_reply_threads(
            user_id=user_id, now=now, max_age_days=config.awaiting_reply_max_age_days
        )
        candidates = [awaiting_reply(t, now=now, config=config) for t in threads]
        report.evaluated += len(threads)
    elif phase == "meeting_prep":
        meetings = upcoming_meetings(user_id=user_id, now=now, config=config)
        candidates = [meeting_prep(m, now=now, config=config) for m in meetings]
        report.evaluated += len(meetings)
    elif phase == "weekly_digest":
        candidates = [
            weekly_digest(
                digest_facts(user_id=user_id, now=now, config=config), now=now, config=config
            )
        ]
        report.evaluated += 1
    else:
        raise ValueError(f"unknown insights phase {phase!r}")
    keep = insights_store(
        user_id=user_id,
        candidates=[c for c in candidates if c is not None],
        config=config,
        report=report,
    )
    if phase != "weekly_digest":
        # A digest concerns its week only: last week's stays until it expires.
        report.resolved += insights_resolve(user_id=user_id, kinds=[phase], keep=keep)


def _contact_chunks(
    *, user_id: int, contact_ids: Sequence[int] | None, after_id: int, size: int
) -> Iterator[list[int]]:
    if contact_ids is None:
        while chunk := live_contact_ids(user_id=user_id, after_id=after_id, limit=size):
            yield chunk
            after_id = chunk[-1]
        return
    ids = sorted(pk for pk in set(contact_ids) if pk > after_id)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def insights_generate(
    *,
    user_id: int,
    now: datetime | None = None,
    contact_ids: Sequence[int] | None = None,
    phase: str = PHASES[0],
    after_id: int = 0,
    fence: Callable[[], None] | None = None,
    deadline: float | None = None,
    checkpoint: Callable[[], None] | None = None,
    report: InsightsReport | None = None,
    config: InsightsConfig | None = None,
) -> Resume | None:
    """Generate the user's insights from `phase` on (see the module docstring).

    `contact_ids`: the contacts the per-contact rules look at (None: every live contact).
    `fence` runs first in every write transaction (a job's lease check); `deadline` (a
    time.monotonic() value) stops the run between chunks, returning where to go on; None when
    done. `checkpoint` (a job's `ctx.checkpoint`) is called between chunks and before every LLM
    call: an operator's cancel stops the run there (it raises). `report` accumulates what was
    done.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown insights phase {phase!r}; one of: {', '.join(PHASES)}")
    config = config or get_config()
    now = now or timezone.now()
    report = report if report is not None else InsightsReport()

    def late() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            return True
        if checkpoint is not None:
            checkpoint()
        return False

    for current in PHASES[PHASES.index(phase) :]:
        start_after = after_id if current == phase else 0
        if current != phase and late():
            return Resume(current)
        if current == "contacts":
            chunks = _contact_chunks(
                user_id=user_id,
                contact_ids=contact_ids,
                after_id=start_after,
                size=config.chunk_size,
            )
            chunk = next(chunks, [])
            while chunk:

                def contacts_work(ids: list[int] = chunk) -> None:
                    insights_contacts_chunk(
                        user_id=user_id, contact_ids=ids, now=now, config=config, report=report
                    )

                _write(user_id, fence, contacts_work)
                report.chunks += 1
                following = next(chunks, [])
                if following and late():
                    return Resume("contacts", chunk[-1])
                chunk = following
        elif current == "llm":
            resume = _llm_phase(
                user_id=user_id,
                after_id=start_after,
                fence=fence,
                deadline=deadline,
                checkpoint=checkpoint,
                config=config,
                report=report,
            )
            if resume is not None:
                return resume
        else:

            def user_work(name: str = current) -> None:
                _user_phase(name, user_id=user_id, now=now, config=config, report=report)

            _write(user_id, fence, user_work)
            report.chunks += 1
    return None


# --- LLM -------------------------------------------------------------------------------------

_RECORD_FIELDS = ("summary", "open_questions", "summary_source", "llm_fallback_reason")


def insight_llm_record(*, user_id: int, insight_id: int, basis_hash: str, outcome: Any) -> bool:
    """Record the LLM's answer for the content it was given (`basis_hash`): its summary and
    open questions when it phrased it, else the fallback reason (the heuristic text stands).
    A row whose content changed meanwhile is left alone (False)."""
    rows = Insight.objects.filter(user_id=user_id, pk=insight_id, basis_hash=basis_hash)
    now = timezone.now()
    if outcome.phrased:
        return bool(
            rows.update(
                summary=outcome.summary,
                open_questions=outcome.open_questions,
                summary_source=SummarySource.LLM,
                llm_fallback_reason=None,
                llm_basis_hash=basis_hash,
                updated_at=now,
            )
        )
    changes: dict[str, Any] = {"llm_fallback_reason": outcome.reason, "updated_at": now}
    if outcome.definitive:
        # An invalid answer is not asked again until the content changes.
        changes["llm_basis_hash"] = basis_hash
    return bool(rows.update(**changes))


def _llm_phase(
    *,
    user_id: int,
    after_id: int,
    fence: Callable[[], None] | None,
    deadline: float | None,
    config: InsightsConfig,
    report: InsightsReport,
    checkpoint: Callable[[], None] | None = None,
) -> Resume | None:
    """Phrase the pending insights one by one; stop after `llm_max_consecutive_failures`
    timeouts or errors in a row (the rest are marked with why), or at the deadline."""
    if not config.llm_enabled or not config.llm_kinds:
        return None
    from insights.llm import LLMOutcome, llm_client, llm_phrase

    client = llm_client(config)
    failures = 0
    while True:
        pending = list(
            insights_llm_pending(user_id=user_id, kinds=config.llm_kinds, after_id=after_id)[
                :LLM_BATCH
            ]
        )
        if not pending:
            return None
        for insight in pending:
            if checkpoint is not None:
                checkpoint()  # a cancel stops before the next (possibly paid) LLM call
            ids = (
                insight.evidence.get("interaction_ids")
                if isinstance(insight.evidence, dict)
                else None
            )
            messages = interaction_texts(
                user_id=user_id,
                interaction_ids=[i for i in (ids or []) if isinstance(i, int)],
                limit=LLM_MESSAGES,
            )
            outcome = llm_phrase(
                client=client, config=config, insight=insight, messages=messages, deadline=deadline
            )
            report.llm_calls += 1
            if outcome.phrased:
                report.llm_phrased += 1
            else:
                report.llm_fallbacks[outcome.kind] += 1

            def record(row: Insight = insight, result: LLMOutcome = outcome) -> None:
                insight_llm_record(
                    user_id=user_id, insight_id=row.pk, basis_hash=row.basis_hash, outcome=result
                )

            _write(user_id, fence, record)
            after_id = insight.pk
            failures = failures + 1 if outcome.failed else 0
            if failures >= config.llm_max_consecutive_failures:
                reason = (
                    f"error: not attempted: the LLM endpoint failed {failures} times in a row "
                    f"(last: {outcome.reason})"
                )

                def skip_rest(last: int = after_id, why: str = reason) -> int:
                    return insights_llm_pending(
                        user_id=user_id, kinds=config.llm_kinds, after_id=last
                    ).update(llm_fallback_reason=why, updated_at=timezone.now())

                skipped = _write(user_id, fence, skip_rest)
                if skipped:
                    report.llm_fallbacks["skipped"] += skipped
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return Resume("llm", after_id)


# --- statuses --------------------------------------------------------------------------------


def insight_set_status(*, user: Any, insight_ids: Sequence[int], status: str) -> int:
    """Set the status of the user's insights among `insight_ids`; how many changed. A rerun
    keeps it (the generation never writes the status)."""
    if status not in InsightStatus.values:
        raise ValueError(f"unknown status {status!r}; one of: {', '.join(InsightStatus.values)}")
    user_id = user if isinstance(user, int) else user.pk
    return (
        Insight.objects.filter(user_id=user_id, pk__in=list(insight_ids))
        .exclude(status=status)
        .update(status=status, updated_at=timezone.now())
    )


# --- contact merges --------------------------------------------------------------------------


def insights_move(*, user_id: int, source_id: int, target_id: int) -> list[int]:
    """A merge: the source contact's insights go with the person to the target (statuses
    kept); the ids moved. The next generation resolves those the target does not have (their
    fingerprints name the source), except dismissed and done ones, kept until they expire.
    Nothing moves to a contact that is not the user's."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_INSIGHT} SET contact_id = %s WHERE user_id = %s AND contact_id = %s "
            f"AND EXISTS (SELECT 1 FROM {_CONTACT} c WHERE c.id = %s AND c.user_id = %s) "
            "RETURNING id",
            [target_id, user_id, source_id, target_id, user_id],
        )
        return sorted(row[0] for row in cursor.fetchall())


def insights_restore(*, user_id: int, source_id: int, target_id: int, ids: list[int]) -> None:
    """An unmerge: the insights `ids` still on the target go back to the source (the user's
    contact: never another user's)."""
    if ids and Contact.objects.filter(pk=source_id, user_id=user_id).exists():
        Insight.objects.filter(user_id=user_id, contact_id=target_id, pk__in=ids).update(
            contact_id=source_id
        )
