"""Issue 12, item 7: user A never sees or changes user B's rows, through any selector, service,
admin page, admin action or management command that takes a user.

The tests ENUMERATE what there is (introspection) and compare it with the registries below: a
new public function with a user parameter in a `selectors`/`services` module of the project
apps, a new ModelAdmin, admin action or management command with a user argument that has no
isolation check here makes `test_every_*_has_an_isolation_check` fail, naming it. To add one,
add an entry to FUNCTION_CHECKS / ADMIN_CHECKS / COMMAND_CHECKS (a few lines each).

Every check runs as user A (ada) against the world of tests/isolation_world.py (both users
with a row in every user-owned table), passing B's ids wherever the function takes ids, and
then asserts: B's rows are exactly as before (every column of every user-owned table), the
result holds no row of B and no text of B (B's tag), no row of one user points at another
user's row, and, where the check says so, A's own data is there (not vacuous). Each check runs
in a savepoint rolled back after it, so they do not see each other's writes.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.db import transaction
from django.urls import NoReverseMatch, reverse

from contacts.services.merge import MergeError
from insights.conf import get_config as insights_config
from insights.llm import LLMOutcome
from insights.rules.base import Candidate
from insights.services import InsightsReport
from search.embedding import get_provider
from search.models import SearchDocument
from search.selectors import ContactNotFound as SearchContactNotFound
from search.selectors import provider_settings
from search.services import ChunkingRules, SearchDocumentText
from timeline.selectors import ContactNotFound as TimelineContactNotFound
from tests.isolation_world import (
    PROJECT_APPS,
    STAND_IN_DIMS,
    STAND_IN_MODEL,
    World,
    build_world,
    configure,
    cross_user_references,
    leaks,
    snapshot,
    snapshot_diff,
)

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(settings, openai_server) -> World:
    configure(settings, openai_server)
    return build_world()


# == enumeration ==============================================================================


def user_functions() -> dict[str, Callable[..., Any]]:
    """Every public function defined in a selectors/services module (or package) of the
    project apps, subpackages included, that has a parameter naming a user."""
    found: dict[str, Callable[..., Any]] = {}
    for app in PROJECT_APPS:
        for path in sorted((REPO / app).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if not {"selectors", "services"} & set(parts) or "migrations" in parts:
                continue
            name = ".".join(parts).removesuffix(".__init__")
            module = importlib.import_module(name)
            for attr, fn in inspect.getmembers(module, inspect.isfunction):
                if attr.startswith("_") or fn.__module__ != module.__name__:
                    continue
                if any("user" in p for p in inspect.signature(fn).parameters):
                    found[f"{name}.{attr}"] = fn
    return found


def project_admins() -> dict[str, admin.ModelAdmin]:
    return {
        model._meta.label_lower: model_admin
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS
    }


def _parser_dests(parser: argparse.ArgumentParser) -> list[str]:
    dests = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                dests += _parser_dests(sub)
        else:
            dests.append(action.dest)
    return dests


def user_commands() -> list[str]:
    """Management commands of the project apps with an argument naming a user."""
    found = []
    for name, app in sorted(get_commands().items()):
        if app not in PROJECT_APPS:
            continue
        parser = load_command_class(app, name).create_parser("manage.py", name)
        if any("user" in dest for dest in _parser_dests(parser)):
            found.append(name)
    return found


def superuser_actions(rf, django_user_model) -> dict[str, list[str]]:
    root = django_user_model(username="root-probe", is_staff=True, is_superuser=True)
    request = rf.get("/")
    request.user = root
    return {
        label: sorted(model_admin.get_actions(request))
        for label, model_admin in project_admins().items()
    }


# == the registry of function checks ==========================================================


@dataclass(frozen=True)
class Case:
    """How to call one function as user A against B's rows: `call(fn, world)` returns the
    result; `raises` are the refusals that count as isolation (B's id not found); `own` says
    what of A's the result must hold (a check that sees nothing proves nothing)."""

    call: Callable[[Callable[..., Any], World], Any] | list[Callable[..., Any]]
    raises: tuple[type[BaseException], ...] = ()
    own: Callable[[Any, World], bool] | None = None


def _noop() -> None:
    return None


def _has_own_text(result: Any, w: World) -> bool:
    return bool(leaks(result, viewer=w.b.user, other=w.a))


def _rules() -> ChunkingRules:
    return ChunkingRules()


def _b_documents(w: World) -> list[SearchDocumentText]:
    return [
        SearchDocumentText(d.interaction_id, d.subject, d.body, d.content_hash)
        for d in SearchDocument.objects.filter(user=w.b.user)
    ]


def _both(calls: Callable[[World], list[Any]]) -> list[Callable[[Callable[..., Any], World], Any]]:
    """Each call of `calls` as a variant of its own (checked in a savepoint of its own: a
    second call must not undo what the first did wrong)."""
    return [
        lambda fn, w, n=n: calls(w)[n](fn) for n in range(2)
    ]


def _moves(w: World) -> list[Callable[[Callable[..., Any]], Any]]:
    """A merge hook's move, both ways: B's contact's rows to A's contact, and A's contact's
    rows to B's contact (either would join the two users)."""
    a, b = w.a.jane.pk, w.b.jane.pk
    return [
        lambda fn: fn(user_id=w.a.user.pk, source_id=b, target_id=a),
        lambda fn: fn(user_id=w.a.user.pk, source_id=a, target_id=b),
    ]


def _restores(ids_of: Callable[[World], tuple[list[int], list[int]]]):
    def calls(w: World) -> list[Callable[[Callable[..., Any]], Any]]:
        a, b = w.a.jane.pk, w.b.jane.pk
        a_ids, b_ids = ids_of(w)
        return [
            lambda fn: fn(user_id=w.a.user.pk, source_id=b, target_id=a, ids=a_ids + b_ids),
            lambda fn: fn(user_id=w.a.user.pk, source_id=a, target_id=b, ids=a_ids + b_ids),
        ]

    return calls


def _timeline_ids(w: World) -> tuple[list[int], list[int]]:
    return w.a.timeline_events, w.b.timeline_events


def _insight_ids(w: World) -> tuple[list[int], list[int]]:
    return w.a.insights, w.b.insights


def _candidate(w: World) -> Candidate:
    return Candidate(
        kind="relationship_strength",
        fingerprint="isolation-probe",
        contact_id=w.b.jane.pk,
        title="probe",
        summary="probe",
        evidence={},
        score=1.0,
        expires_at=w.now.replace(year=w.now.year + 1),
    )



FUNCTION_CHECKS: dict[str, Case] = {
    # -- contacts ---------------------------------------------------------------------------
    "contacts.selectors.batch_interaction_ids": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, batch_id=w.b.batch)
        + fn(user_id=w.a.user.pk, batch_id=w.a.batch),
        own=lambda r, w: set(w.a.interactions) <= set(r) and not set(r) & set(w.b.interactions),
    ),
    "contacts.selectors.contact_list": Case(
        lambda fn, w: list(fn(user=w.a.user)) + list(fn(user=w.a.user, query="jane")),
        own=_has_own_text,
    ),
    "contacts.services.extract.contacts_extract": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk, interaction_ids=w.b.interactions + w.a.interactions
        ),
        own=lambda r, w: r.interactions == len(w.a.interactions),
    ),
    "contacts.services.extract.contacts_extract_chunk": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            interaction_ids=w.b.interactions + w.a.interactions,
            own=frozenset({"bobtag@example.com"}),
        ),
    ),
    "contacts.services.extract.user_own_keys": Case(
        lambda fn, w: fn(user_id=w.a.user.pk), own=_has_own_text
    ),
    "contacts.services.merge.contact_merge": Case(
        lambda fn, w: fn(user=w.a.user, source=w.b.jane, target=w.a.jane), raises=(MergeError,)
    ),
    "contacts.services.merge.contact_unmerge": Case(
        lambda fn, w: fn(merge=w.b.merge, user=w.a.user), raises=(MergeError,)
    ),
    "contacts.services.merge.merge_suggestion_accept": Case(
        lambda fn, w: fn(user=w.a.user, suggestion=w.b.suggestion), raises=(MergeError,)
    ),
    "contacts.services.merge.merge_suggestion_reject": Case(
        lambda fn, w: fn(user=w.a.user, suggestion=w.b.suggestion), raises=(MergeError,)
    ),
    "contacts.services.merge.refresh_rollups": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, contact_ids=w.b.contacts + w.a.contacts)
    ),
    # -- insights ---------------------------------------------------------------------------
    "insights.selectors.awaiting_reply_threads": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now, max_age_days=60), own=_has_own_text
    ),
    "insights.selectors.contact_facts": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk, contact_ids=w.b.contacts + w.a.contacts, now=w.now
        ),
        own=lambda r, w: {f.id for f in r} <= set(w.a.contacts) and bool(r),
    ),
    "insights.selectors.digest_facts": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now, config=insights_config())
    ),
    "insights.selectors.insight_list": Case(
        lambda fn, w: list(fn(user=w.a.user)), own=lambda r, w: len(r) == len(w.a.insights)
    ),
    "insights.selectors.insights_llm_pending": Case(
        lambda fn, w: list(
            fn(
                user_id=w.a.user.pk,
                kinds=["relationship_strength", "awaiting_reply", "going_cold", "digest"],
                after_id=0,
            )
        )
    ),
    "insights.selectors.insights_summary": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "insights.selectors.interaction_texts": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk, interaction_ids=w.b.interactions + w.a.interactions, limit=50
        ),
        own=_has_own_text,
    ),
    "insights.selectors.upcoming_meetings": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now, config=insights_config())
    ),
    "insights.services.insight_llm_record": Case(
        lambda fn, w: [
            fn(
                user_id=w.a.user.pk,
                insight_id=pk,
                basis_hash=basis,
                outcome=LLMOutcome(summary="probe", open_questions=[]),
            )
            for pk, basis in __import__("insights.models").models.Insight.objects.filter(
                pk__in=w.b.insights
            ).values_list("pk", "basis_hash")
        ],
        own=lambda r, w: r and not any(r),
    ),
    "insights.services.insight_set_status": Case(
        lambda fn, w: fn(
            user=w.a.user, insight_ids=w.b.insights + w.a.insights, status="dismissed"
        ),
        own=lambda r, w: r == len(w.a.insights),
    ),
    "insights.services.insights_contacts_chunk": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            contact_ids=w.b.contacts + w.a.contacts,
            now=w.now,
            config=insights_config(),
            report=InsightsReport(),
        )
    ),
    "insights.services.insights_expire": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, now=w.now.replace(year=w.now.year + 5)),
        own=lambda r, w: r == len(w.a.insights),
    ),
    "insights.services.insights_generate": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, now=w.now, contact_ids=w.b.contacts + w.a.contacts),
            fn(user_id=w.a.user.pk, now=w.now),
        ]
    ),
    "insights.services.insights_move": Case(_both(_moves)),
    "insights.services.insights_resolve": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            kinds=["relationship_strength", "awaiting_reply", "going_cold", "digest"],
            keep=set(),
            contact_ids=w.b.contacts + w.a.contacts,
        )
        + fn(
            user_id=w.a.user.pk,
            kinds=["relationship_strength", "awaiting_reply", "going_cold", "digest"],
            keep=set(),
        ),
        own=lambda r, w: r >= 1,
    ),
    "insights.services.insights_restore": Case(_both(_restores(_insight_ids))),
    "insights.services.insights_store": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            candidates=[_candidate(w)],
            config=insights_config(),
            report=InsightsReport(),
        )
    ),
    # -- jobs (normalization) ---------------------------------------------------------------
    "jobs.normalization.selectors.account_addresses": Case(
        lambda fn, w: fn(user_id=w.a.user.pk), own=_has_own_text
    ),
    "jobs.normalization.selectors.normalization_summary": Case(
        lambda fn, w: fn(user_id=w.a.user.pk)
    ),
    "jobs.normalization.selectors.raw_events_pending_exist": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, provider="gmail", batch_id=w.b.batch),
            fn(user_id=w.a.user.pk, provider="gmail", account_id=w.b.account.pk),
        ],
        own=lambda r, w: r == [False, False],
    ),
    "jobs.normalization.services.raw_events_normalize": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, provider="gmail", batch_id=w.b.batch),
            fn(user_id=w.a.user.pk, provider="gmail", account_id=w.b.account.pk),
            fn(user_id=w.a.user.pk, provider="gmail"),
        ]
    ),
    "jobs.normalization.services.raw_events_normalize_chunk": Case(
        lambda fn, w: [
            fn(user_id=w.a.user.pk, provider="gmail", batch_id=w.b.batch, chunk_size=50),
            fn(user_id=w.a.user.pk, provider="gmail", account_id=w.b.account.pk, chunk_size=50),
            fn(
                user_id=w.a.user.pk,
                provider="gmail",
                chunk_size=50,
                addresses={w.b.account.pk: frozenset({"bobtag@example.com"})},
            ),
        ]
    ),
    "jobs.normalization.services.raw_events_reset": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk, providers=["gmail"], ids=w.b.raw_events + w.a.raw_events
        )
        + fn(user_id=w.a.user.pk, providers=["gmail", "calendar"]),
        own=lambda r, w: r >= len(w.a.raw_events) - 1,
    ),
    # -- search -----------------------------------------------------------------------------
    "search.selectors.contact_find": Case(
        lambda fn, w: fn(user=w.a.user, identifier=str(w.b.jane.pk)),
        raises=(SearchContactNotFound,),
    ),
    "search.selectors.embedding_set_missing": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, model=STAND_IN_MODEL, dims=STAND_IN_DIMS)
    ),
    "search.selectors.embedding_status": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "search.selectors.interaction_search": Case(
        lambda fn, w: [
            list(fn(user=w.a.user, query=f"{tag} invoice roadmap", mode=mode, limit=50))
            for tag in ("bobtag", "adatag")
            for mode in ("hybrid", "vector", "text")
        ],
        own=_has_own_text,
    ),
    "search.selectors.search_space": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "search.selectors.vector_search_is_exact": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk, model=STAND_IN_MODEL, dims=STAND_IN_DIMS, limit=10
        )
    ),
    "search.services.documents_embed": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            documents=_b_documents(w),
            provider=get_provider(),
            provider_settings=provider_settings(),
            rules=_rules(),
            fence=_noop,
        )
    ),
    "search.services.embedding_set_complete": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            model=STAND_IN_MODEL,
            dims=STAND_IN_DIMS,
            provider_settings=provider_settings(),
            fence=_noop,
        )
    ),
    "search.services.embeddings_of_other_models_delete": Case(
        lambda fn, w: fn(user_id=w.a.user.pk, model="another-model", dims=8, fence=_noop),
        own=lambda r, w: r[0] == len(w.a.interactions),
    ),
    "search.services.embeddings_rebuild_enqueue": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "search.services.search_documents_write": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk,
            interaction_ids=w.b.interactions + w.a.interactions,
            rules=_rules(),
            fence=_noop,
        ),
        own=_has_own_text,
    ),
    # -- timeline ---------------------------------------------------------------------------
    "timeline.selectors.contact_timeline": Case(
        lambda fn, w: fn(user=w.a.user, contact=w.b.jane.pk),
        raises=(TimelineContactNotFound,),
    ),
    "timeline.selectors.timeline_contact_find": Case(
        lambda fn, w: fn(user=w.a.user, identifier=str(w.b.jane.pk)),
        raises=(TimelineContactNotFound,),
    ),
    "timeline.selectors.timeline_summary": Case(lambda fn, w: fn(user_id=w.a.user.pk)),
    "timeline.services.timeline_events_move": Case(_both(_moves)),
    "timeline.services.timeline_events_restore": Case(_both(_restores(_timeline_ids))),
    "timeline.services.timeline_events_write": Case(
        lambda fn, w: fn(
            user_id=w.a.user.pk, interaction_ids=w.b.interactions + w.a.interactions
        )
    ),
}


def _holds(own: Callable[[Any, World], bool], result: Any, w: World) -> bool:
    try:
        return bool(own(result, w))
    except Exception:  # noqa: BLE001 - a result of the wrong shape: not A's data
        return False


def run_isolated(w: World, label: str, call: Callable[[], Any], *, raises=(), own=None):
    """Run `call` in a savepoint rolled back after it; the isolation problems found."""
    problems: list[str] = []
    before = snapshot(w.b.user)
    savepoint = transaction.savepoint()
    try:
        try:
            result = call()
        except raises as exc:
            result = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported with the function's name
            return [f"{label}: raised {type(exc).__name__}: {exc}"]
        problems += [f"{label}: B's rows changed: {c}" for c in snapshot_diff(before, snapshot(w.b.user))]
        problems += [f"{label}: returned B's {leak}" for leak in leaks(result, viewer=w.a.user, other=w.b)]
        problems += [f"{label}: cross-user reference {r}" for r in cross_user_references()]
        if own is not None and not _holds(own, result, w):
            problems.append(f"{label}: A's own data not in the result {result!r:.300}")
    finally:
        transaction.savepoint_rollback(savepoint)
    return problems


# == the tests: functions =====================================================================


def test_every_selector_and_service_taking_a_user_has_an_isolation_check():
    found = user_functions()
    missing = sorted(set(found) - set(FUNCTION_CHECKS))
    assert not missing, (
        "selectors/services that take a user but have no isolation check in "
        f"tests/test_isolation_enumerated.py FUNCTION_CHECKS: {missing}"
    )
    stale = sorted(set(FUNCTION_CHECKS) - set(found))
    assert not stale, f"FUNCTION_CHECKS names functions that no longer exist: {stale}"
    print(f"FIGURES: {{\"functions_checked\": {len(found)}}}")


def test_no_selector_or_service_lets_a_user_reach_another_users_rows(world):
    problems: list[str] = []
    functions = user_functions()
    for name, case in sorted(FUNCTION_CHECKS.items()):
        fn = functions[name]
        variants = case.call if isinstance(case.call, list) else [case.call]
        for n, call in enumerate(variants):
            problems += run_isolated(
                world,
                name if len(variants) == 1 else f"{name} (variant {n + 1})",
                lambda fn=fn, call=call: call(fn, world),
                raises=case.raises,
                own=case.own,
            )
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail(world):
    """The harness sees a leak, a change of B's rows and a cross-user reference."""
    from contacts.models import Contact

    leak = run_isolated(world, "leak", lambda: list(Contact.objects.filter(user=world.b.user)))
    assert any("returned B's contacts.Contact" in p for p in leak), leak
    write = run_isolated(
        world,
        "write",
        lambda: Contact.objects.filter(pk=world.b.jane.pk).update(display_name="x"),
    )
    assert any("B's rows changed: contacts.Contact" in p for p in write), write
    join = run_isolated(
        world,
        "join",
        lambda: __import__("timeline.models").models.TimelineEvent.objects.filter(
            pk__in=world.a.timeline_events
        ).update(contact_id=world.b.jane.pk),
    )
    assert any("cross-user reference timeline.TimelineEvent.contact" in p for p in join), join
    vacuous = run_isolated(world, "vacuous", lambda: [], own=_has_own_text)
    assert any("A's own data not in the result" in p for p in vacuous), vacuous
